"""The `chatd` command: standalone chatd under hypercorn (the default), uvicorn or granian.

    chatd --config lakehouse.toml                 # bind from [chatd] bind
    chatd --config lakehouse.toml --bind 0.0.0.0:3220
    chatd --server uvicorn --workers 4            # when installed: pip install 'chatd[uvicorn]'
    chatd --check --config lakehouse.toml         # validate, print the routing table, exit
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import serve
from .version import __version__
from .config import load_config
from .errors import ConfigError
from .routing import Router
from .logs import configure as configure_logging
from .standalone import create_app
from .table import routing_table

log = logging.getLogger("chatd")


def positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chatd", description="Route chat requests to LLM providers by model name.")
    parser.add_argument("--config", help="lakehouse.toml (default: $LAKEHOUSE_CONFIG, else ./lakehouse.toml)")
    parser.add_argument("--bind", help="HOST:PORT to listen on (default: [chatd] bind, 127.0.0.1:3220)")
    parser.add_argument("--server", choices=serve.SERVERS, default="hypercorn",
                        help="the ASGI server (default: hypercorn; uvicorn and granian when installed)")
    parser.add_argument("--workers", type=positive, default=1, metavar="N",
                        help="worker processes (default: 1); more than 1 share a PROMETHEUS_MULTIPROC_DIR")
    parser.add_argument("--check", action="store_true",
                        help="validate the config, print the resolved routing table and exit (2 on error)")
    parser.add_argument("--version", action="version", version=f"chatd {__version__}")
    return parser.parse_args(argv)


def check(path: str | None) -> int:
    """`chatd --check`: the routing table on stdout, or the config error on stderr and 2."""
    try:
        config = load_config(path)
        table = routing_table(config, router=Router(config))
    except ConfigError as exc:
        print(f"chatd: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check:  # warnings (a tier without a key, a readable env_file) still reach stderr
        logging.basicConfig(level=logging.WARNING, format="chatd: %(levelname)s: %(message)s")
        return check(args.config)
    try:
        serve.require(args.server)
        configure_logging()
        config = load_config(args.config)
        app = create_app(config)  # with workers too: a bad config stops here, before any of them starts
        names = ", ".join(p.name for p in config.registered)
        log.info("config %s: %d provider(s) registered: %s", config.path, len(config.registered), names)
        return serve.run(args.server, app, bind=args.bind or config.bind, workers=args.workers)
    except (ConfigError, serve.ServeError) as exc:
        print(f"chatd: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

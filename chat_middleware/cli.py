"""The `chatd` command: standalone chatd under hypercorn.

    chatd --config lakehouse.toml                 # bind from [chatd] bind
    chatd --config lakehouse.toml --bind 0.0.0.0:3220
    chatd --check --config lakehouse.toml         # validate, print the routing table, exit
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from . import __version__
from .config import load_config
from .errors import ConfigError
from .routing import Router
from .standalone import create_app
from .table import routing_table

log = logging.getLogger("chatd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chatd", description="Route chat requests to LLM providers by model name.")
    parser.add_argument("--config", help="lakehouse.toml (default: $LAKEHOUSE_CONFIG, else ./lakehouse.toml)")
    parser.add_argument("--bind", help="HOST:PORT to listen on (default: [chatd] bind, 127.0.0.1:3220)")
    parser.add_argument("--check", action="store_true",
                        help="validate the config, print the resolved routing table and exit (2 on error)")
    parser.add_argument("--version", action="version", version=f"chatd {__version__}")
    return parser.parse_args(argv)


async def _serve(app, bind: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config = HypercornConfig()
    config.bind = [bind]
    config.graceful_timeout = 5.0
    log.info("chatd %s listening on http://%s", __version__, bind)
    await serve(app, config, shutdown_trigger=stop.wait)


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        app = create_app(config)
    except ConfigError as exc:
        print(f"chatd: {exc}", file=sys.stderr)
        return 2
    names = ", ".join(p.name for p in config.registered)
    log.info("config %s: %d provider(s) registered: %s", config.path, len(config.registered), names)
    asyncio.run(_serve(app, args.bind or config.bind))
    return 0


if __name__ == "__main__":
    sys.exit(main())

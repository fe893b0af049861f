"""deploy/: what an operator installs loads, agrees with itself, and keeps keys out of sight."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypercorn.config import Config as HypercornConfig

from chat_middleware import load_config
from chat_middleware.config import Timeouts
from chat_middleware.providers import BUILTIN_PROVIDERS

from tests.harness import ChatdServer, free_port, write_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ENV_EXAMPLES = sorted(DEPLOY.glob("*.env.example"))
HYPERCORN_TOML = DEPLOY / "hypercorn.toml"
BUILTIN_KEYS = {p["key_env"] for p in BUILTIN_PROVIDERS.values() if "key_env" in p}


def hypercorn_config() -> HypercornConfig:
    return HypercornConfig.from_toml(HYPERCORN_TOML)


def port_of(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1])


def unit_settings(text: str) -> dict[str, list[str]]:
    """`Key=value` lines of a systemd unit; a key may repeat (ExecReload=, Environment=)."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_environment(settings: dict[str, list[str]]) -> dict[str, str]:
    return dict(value.split("=", 1) for value in settings.get("Environment", []))


def container_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Containerfile, continuation lines joined."""
    instructions, pending = [], ""
    for line in (DEPLOY / "Containerfile").read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip():
            name, _, args = line.strip().partition(" ")
            instructions.append((name.upper(), args.strip()))
    return instructions


def container(name: str) -> list[str]:
    return [args for instruction, args in container_instructions() if instruction == name]


def nginx_blocks(text: str) -> list:
    """nginx config as nested [name, args, children-or-None] lists (comments dropped)."""
    tokens = re.findall(r'"[^"]*"|[{};]|[^\s{};"]+', re.sub(r"#[^\n]*", "", text))
    root: list = []
    stack, words = [root], []
    for token in tokens:
        if token == "{":
            block = [words[0], words[1:], []]
            stack[-1].append(block)
            stack.append(block[2])
            words = []
        elif token == "}":
            stack.pop()
        elif token == ";":
            stack[-1].append([words[0], words[1:], None])
            words = []
        else:
            words.append(token)
    return root


def nginx_find(blocks: list, name: str) -> list:
    found = []
    for block in blocks:
        if block[0] == name:
            found.append(block)
        if block[2]:
            found += nginx_find(block[2], name)
    return found


def directives(block: list) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for name, args, children in block[2]:
        if children is None:
            out.setdefault(name, []).append(args)
    return out


def nginx_seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[unit]


NGINX = nginx_blocks((DEPLOY / "nginx.conf").read_text())


def location_for(path: str) -> list | None:
    """The prefix location nginx picks for `path`: the longest that matches."""
    prefixes = [block for block in nginx_find(NGINX, "location") if len(block[1]) == 1]
    matching = [block for block in prefixes if path.startswith(block[1][0])]
    return max(matching, key=lambda block: len(block[1][0]), default=None)


def chat_location() -> dict[str, list[list[str]]]:
    """The location serving both the native /v1/chat and everything under /v1/chat/."""
    location = location_for("/v1/chat/completions")
    assert location is not None and location is location_for("/v1/chat")
    return directives(location)


# ----- hypercorn.toml


def test_hypercorn_toml_loads_with_hypercorn_and_binds_3220():
    names = tomllib.loads(HYPERCORN_TOML.read_text())
    unknown = [name for name in names if not hasattr(HypercornConfig, name)]
    assert not unknown, f"hypercorn ignores unknown settings silently: {unknown}"
    config = hypercorn_config()
    assert [port_of(bind) for bind in config.bind] == [3220]
    assert config.backlog == 2048
    assert config.workers >= 1  # the unit's reload signals worker processes


# ----- systemd unit


def verify_complaints(unit: str, tmp_path: Path, name: str = "chatd.service") -> list[str]:
    """What `systemd-analyze verify` says about a unit, with the venv's binaries and redis-server stubbed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for binary in set(re.findall(r"/opt/chatd/bin/(\w+)|/usr/bin/(redis-server)", unit)):
        shutil.copy("/bin/true", bin_dir / "".join(binary))
    path = tmp_path / name
    path.write_text(unit.replace("/opt/chatd/bin/", f"{bin_dir}/").replace("/usr/bin/redis-server",
                                                                             f"{bin_dir}/redis-server"))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=30)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if name in line]
    return complaints + ([f"exit status {result.returncode}"] if result.returncode else [])


needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze is not installed")


@needs_systemd_analyze
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    assert verify_complaints((DEPLOY / "chatd.service").read_text(), tmp_path) == []


@needs_systemd_analyze
def test_the_redis_unit_passes_systemd_analyze_verify(tmp_path):
    assert verify_complaints((DEPLOY / "chatd-redis.service").read_text(), tmp_path, "chatd-redis.service") == []


@needs_systemd_analyze
def test_systemd_analyze_check_catches_a_misspelled_directive(tmp_path):
    unit = (DEPLOY / "chatd.service").read_text().replace("\nNoNewPrivileges=", "\nNoNewPrivilegez=")
    assert any("NoNewPrivilegez" in line for line in verify_complaints(unit, tmp_path))


def test_systemd_unit_runs_hypercorn_with_the_installed_config_and_stops_gracefully():
    unit = unit_settings((DEPLOY / "chatd.service").read_text())
    assert unit["ExecStart"] == ["/opt/chatd/bin/hypercorn --config /etc/chatd/hypercorn.toml app:app"]
    # SIGTERM to hypercorn's main process alone lets workers finish; TimeoutStopSec must outlast that.
    assert unit["KillMode"] == ["mixed"]
    assert float(unit["TimeoutStopSec"][0]) > hypercorn_config().graceful_timeout
    # reload checks the config first, then signals the workers, never hypercorn itself (it would restart them)
    check, signal = unit["ExecReload"]
    assert check == "/opt/chatd/bin/chatd --check"
    assert signal.startswith("/usr/bin/pkill --signal HUP --parent $MAINPID ")


def test_systemd_unit_points_workers_at_its_runtime_directory_for_metrics():
    unit = unit_settings((DEPLOY / "chatd.service").read_text())
    assert unit_environment(unit)["PROMETHEUS_MULTIPROC_DIR"] == f"/run/{unit['RuntimeDirectory'][0]}"


# ----- Redis for the shared state


def redis_settings(text: str) -> dict[str, str]:
    """`name value` lines of a redis.conf."""
    return dict(line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))


def test_the_redis_unit_runs_redis_with_the_installed_config_and_its_own_state_directory():
    unit = unit_settings((DEPLOY / "chatd-redis.service").read_text())
    (start,) = unit["ExecStart"]
    assert start.startswith("/usr/bin/redis-server /etc/chatd/redis.conf --supervised systemd")
    assert "install -D -m 0644 deploy/redis.conf /etc/chatd/redis.conf" in (DEPLOY / "redis.conf").read_text()
    settings = redis_settings((DEPLOY / "redis.conf").read_text())
    assert settings["dir"] == f"/var/lib/{unit['StateDirectory'][0]}"


def test_redis_conf_keeps_nothing_and_evicts_only_keys_that_expire():
    settings = redis_settings((DEPLOY / "redis.conf").read_text())
    assert settings["maxmemory-policy"] in ("volatile-ttl", "noeviction")  # every chatd key has a TTL
    assert settings["save"] == '""' and settings["appendonly"] == "no"
    assert settings["bind"].split()[0] == "127.0.0.1" and settings["protected-mode"] == "yes"


def test_the_state_block_loads_and_names_the_redis_of_redis_conf(tmp_path):
    block = (DEPLOY / "state.toml").read_text()
    config = write_config(tmp_path, block)
    settings = redis_settings((DEPLOY / "redis.conf").read_text())
    assert config.state.redis_url == f"redis://{settings['bind'].split()[0]}:{settings['port']}/0"
    assert (config.state.on_error, config.state.lease_s) == ("open", 30)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_server_accepts_redis_conf(tmp_path):
    import redis

    port = free_port()
    conf = tmp_path / "redis.conf"  # its state directory made here: redis-server enters it as it reads the file
    conf.write_text((DEPLOY / "redis.conf").read_text().replace("dir /var/lib/chatd-redis", f"dir {tmp_path}"))
    argv = ["redis-server", str(conf), "--port", str(port)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = redis.Redis(port=port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()[-500:]
                time.sleep(0.02)
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "volatile-ttl"}
        assert int(client.config_get("maxmemory")["maxmemory"]) == 64 * 1024 * 1024
        assert client.config_get("save") == {"save": ""}
        client.close()
    finally:
        server.terminate()
        server.wait(10)
        server.stderr.close()


# ----- env examples and keys


def chatd_variables() -> set[str]:
    """Every environment variable chatd reads: provider keys, client keys, the config path."""
    example = load_config(ROOT / "lakehouse.toml", environ={})
    names = BUILTIN_KEYS | {p.key_env for p in example.providers.values() if p.key_env}
    names |= {example.api_keys_env} - {""}
    return names | {"LAKEHOUSE_CONFIG"}


def assignments(path: Path) -> dict[str, str]:
    """NAME=value lines in the one format both systemd and `docker --env-file` read."""
    found = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(\S*)", line)
        assert match, f"{path.name}: not a NAME=value line: {line!r}"
        found[match[1]] = match[2]
    return found


def test_there_are_env_examples():
    assert DEPLOY / "chatd.env.example" in ENV_EXAMPLES


@pytest.mark.parametrize("path", ENV_EXAMPLES, ids=lambda p: p.name)
def test_env_example_names_only_variables_chatd_reads_and_holds_no_secret(path):
    values = assignments(path)
    assert values, f"{path.name} sets nothing"
    assert set(values) <= chatd_variables(), f"{path.name}: chatd reads none of {set(values) - chatd_variables()}"
    assert all(value == "" for value in values.values()), f"{path.name} holds a value"


def test_chatd_env_example_has_a_line_for_every_builtin_key():
    assert BUILTIN_KEYS <= set(assignments(DEPLOY / "chatd.env.example"))


def install_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if re.search(r"\.env\.example\b", line)
            and re.search(r"\b(install|cp|mv)\b", line)]


def test_every_instruction_to_install_a_key_file_makes_it_0600():
    documents = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *DEPLOY.iterdir()]
    lines = [line for path in documents for line in install_lines(path)]
    assert lines
    for line in lines:
        assert re.search(r"\binstall\b.* -m 0?600 ", line), f"key file installed without mode 0600: {line.strip()}"
    assert install_lines(ROOT / "docs" / "operations.md"), "docs/operations.md should say how to install keys"
    for path in ENV_EXAMPLES:
        assert install_lines(path), f"{path.name} should say how to install it"


def installed_to(line: str) -> str:
    """Where an `install … deploy/X.env.example DEST` line puts the file."""
    words = line.split()
    return next(words[i + 1] for i, word in enumerate(words) if word.endswith(".env.example")).strip("`")


def test_systemd_unit_reads_the_key_file_where_the_docs_install_it():
    (env_file,) = unit_settings((DEPLOY / "chatd.service").read_text())["EnvironmentFile"]
    installed = {installed_to(line) for line in install_lines(ROOT / "docs" / "operations.md")}
    assert env_file.lstrip("-") in installed


def test_a_key_file_installed_as_documented_passes_chatds_own_check(tmp_path, caplog):
    (line,) = install_lines(DEPLOY / "ollama_cloud.env.example")
    mode = int(re.search(r"-m (\d+)", line)[1], 8)
    env_file = tmp_path / "ollama_cloud.env"
    env_file.write_text("OLLAMA_CLOUD_KEY=oc-secret\n")
    env_file.chmod(mode)
    config = write_config(tmp_path, f'[chatd.providers.ollama_cloud]\nenv_file = "{env_file}"\n')
    assert config.providers["ollama_cloud"].registered
    assert "readable by" not in caplog.text


# ----- Containerfile


def test_container_serves_on_the_hypercorn_port_on_every_interface():
    port = port_of(hypercorn_config().bind[0])
    assert container("EXPOSE") == [str(port)]
    (cmd,) = container("CMD")
    command = " ".join(json.loads(cmd))
    assert re.search(rf"\bhypercorn --config /etc/chatd/hypercorn.toml --bind 0\.0\.0\.0:{port} app:app$", command)
    assert "deploy/hypercorn.toml /etc/chatd/hypercorn.toml" in container("COPY")


def test_container_runs_as_a_user_that_owns_its_metrics_directory():
    (user,) = container("USER")
    assert user not in ("root", "0") and not user.startswith("0:")
    metrics_dir = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", " ".join(container("ENV")))[1]
    assert any(re.search(rf"install -d -o {user} .*{metrics_dir}$", run) for run in container("RUN"))
    (cmd,) = container("CMD")
    assert 'find "${PROMETHEUS_MULTIPROC_DIR:?}" -mindepth 1 -delete' in json.loads(cmd)[-1]


def test_container_copies_what_pip_install_needs():
    sources = {src.rstrip("/") for args in container("COPY") for src in args.split()[:-1]}
    assert all((ROOT / src).exists() for src in sources), sources
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {project["project"]["readme"], "pyproject.toml"}
    needed |= {f"{module}.py" for module in project["tool"]["setuptools"]["py-modules"]}
    needed |= {package.split(".")[0] for package in project["tool"]["setuptools"]["packages"]}
    assert needed <= sources


def healthcheck(port: int) -> int:
    """Run the Containerfile's HEALTHCHECK command against 127.0.0.1:port; its exit status."""
    (check,) = container("HEALTHCHECK")
    argv = json.loads(check.split(" CMD ", 1)[1])
    assert argv[0] == "python" and "http://127.0.0.1:3220/v1/chat/health" in argv[-1]
    argv = [sys.executable, *argv[1:-1], argv[-1].replace(":3220/", f":{port}/")]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(argv, capture_output=True, env=env, timeout=10).returncode


def test_container_healthcheck_passes_on_a_running_chatd(tmp_path):
    with ChatdServer(write_config(tmp_path, "")) as chatd:
        assert healthcheck(chatd.port) == 0


def test_container_healthcheck_fails_when_nothing_answers():
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        assert healthcheck(closed.getsockname()[1]) != 0


# ----- nginx


def test_nginx_streams_the_chat_location_unbuffered_over_keepalive():
    location = chat_location()
    assert ["off"] in location["proxy_buffering"]
    assert ["off"] in location["proxy_request_buffering"]
    assert ["1.1"] in location["proxy_http_version"]
    assert ["Connection", '""'] in location["proxy_set_header"]
    assert ["http://chatd"] in location["proxy_pass"]


def test_nginx_waits_longer_than_chatd_and_closes_idle_connections_first():
    location = chat_location()
    assert nginx_seconds(location["proxy_read_timeout"][0][0]) > Timeouts().total
    (upstream,) = [block for block in nginx_find(NGINX, "upstream") if block[1] == ["chatd"]]
    settings = directives(upstream)
    assert nginx_seconds(settings["keepalive_timeout"][0][0]) < hypercorn_config().keep_alive_timeout
    assert {port_of(server[0]) for server in settings["server"]} == {port_of(hypercorn_config().bind[0])}


def test_nginx_passes_the_clients_request_id_or_its_own():
    location = chat_location()
    (variable,) = [args[1] for args in location["proxy_set_header"] if args[0] == "X-Request-Id"]
    (mapping,) = [block for block in nginx_find(NGINX, "map") if block[1] == ["$http_x_request_id", variable]]
    assert ["default", "$http_x_request_id"] in [[name, *args] for name, args, _ in mapping[2]]
    assert ['""', "$request_id"] in [[name, *args] for name, args, _ in mapping[2]]


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_snippet(tmp_path):
    temp = "\n".join(f"    {kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                                "uwsgi", "scgi"))
    wrapper = tmp_path / "nginx.conf"
    wrapper.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                       f"http {{\n{temp}\n    access_log off;\n    include {DEPLOY / 'nginx.conf'};\n}}\n")
    result = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-e", f"{tmp_path}/error.log", "-c", str(wrapper)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr

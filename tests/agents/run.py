"""Run Claude Code, Codex CLI and opencode once, non-interactively, against a loopback base URL.

    done = run_opencode(chatd.url + "/v1/chat", "Say hi", model="qwen3:8b", api_key="k", cwd=tmp_path)
    assert "Hello" in done.stdout, explain(done)

`base_url` is chatd's `/v1/chat` URL for all three: Claude Code appends
`/v1/messages`, Codex `/responses`, opencode `/chat/completions`.

Every run gets a fresh temporary HOME (and XDG dirs, CLAUDE_CONFIG_DIR,
CODEX_HOME, opencode's config file) and an environment built from nothing but
PATH, so a user's real configuration and keys are never read or written. What
each agent would fetch besides the chat call is turned off (README.md in this
directory says what and why), tool calls run without a permission prompt, and
the whole process group is killed when the run ends or its timeout passes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import orjson

from .install import Agents, ensure_installed, pinned_versions

TIMEOUT_S = 120.0
KEY_ENV = "CHATD_API_KEY"
"""The variable that carries the key to Codex (`env_key`) and opencode (`{env:…}`)."""
TITLE = "chatd agent run"
"""An explicit session title spares opencode its extra title-generation request."""

CLAUDE_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry, no HEAD /api/hello, no update check
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
}
OPENCODE_ENV = {
    "OPENCODE_DISABLE_MODELS_FETCH": "1",  # else GET https://models.opencode.ai/api.json at start-up
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_PURE": "1",  # no external plugins
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_CLAUDE_CODE": "1",  # do not read ~/.claude
    "OPENCODE_DISABLE_EXTERNAL_SKILLS": "1",
    "OPENCODE_DISABLE_PROJECT_CONFIG": "1",  # nothing from the working directory's opencode.json
}
CODEX_CONFIG = """\
model = {model}
model_provider = "chatd"
check_for_update_on_startup = false

[analytics]
enabled = false          # else analytics events to ab.chatgpt.com

[features]
plugins = false          # else `git clone https://github.com/openai/plugins.git` and api.github.com

[model_providers.chatd]
name = "chatd"
base_url = {base_url}
wire_api = "responses"
env_key = "{key_env}"
"""


def run_claude(base_url: str, prompt: str, *, model: str, api_key: str, cwd: Path,
               env: Mapping[str, str] | None = None, args: Sequence[str] = (), timeout: float = TIMEOUT_S,
               agents: Agents | None = None) -> subprocess.CompletedProcess[str]:
    """`claude -p PROMPT --model MODEL --allowedTools Bash` with ANTHROPIC_BASE_URL=base_url."""
    agents = agents or ensure_installed()
    with _home() as home:
        agent_env = CLAUDE_ENV | {"ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": api_key,
                                  "CLAUDE_CONFIG_DIR": str(home / ".claude")}
        argv = [str(agents.claude), "-p", prompt, "--model", model, "--allowedTools", "Bash", *args]
        return _run(argv, home, agent_env, env, cwd, timeout)


def run_codex(base_url: str, prompt: str, *, model: str, api_key: str, cwd: Path,
              env: Mapping[str, str] | None = None, args: Sequence[str] = (), timeout: float = TIMEOUT_S,
              agents: Agents | None = None) -> subprocess.CompletedProcess[str]:
    """`codex exec` with a `wire_api = "responses"` provider at base_url; commands run unsandboxed.

    `args` come before the prompt, e.g. `("-c", "model_providers.chatd.request_max_retries=0")`.
    """
    agents = agents or ensure_installed()
    with _home() as home:
        codex_home = home / ".codex"
        codex_home.mkdir()
        (codex_home / "config.toml").write_text(CODEX_CONFIG.format(
            model=_toml_string(model), base_url=_toml_string(base_url), key_env=KEY_ENV))
        agent_env = {"CODEX_HOME": str(codex_home), KEY_ENV: api_key}
        argv = [str(agents.codex), "exec", "--skip-git-repo-check", "--ephemeral", "--color", "never",
                "--dangerously-bypass-approvals-and-sandbox", *args, prompt]
        return _run(argv, home, agent_env, env, cwd, timeout)


def run_opencode(base_url: str, prompt: str, *, model: str, api_key: str, cwd: Path,
                 env: Mapping[str, str] | None = None, args: Sequence[str] = (), timeout: float = TIMEOUT_S,
                 agents: Agents | None = None) -> subprocess.CompletedProcess[str]:
    """`opencode run -m chatd/MODEL PROMPT` through an `@ai-sdk/openai-compatible` provider at base_url."""
    agents = agents or ensure_installed()
    with _home() as home:
        config = home / "opencode.json"
        config.write_bytes(orjson.dumps({
            "provider": {"chatd": {"npm": "@ai-sdk/openai-compatible", "name": "chatd",
                                   "options": {"baseURL": base_url, "apiKey": "{env:%s}" % KEY_ENV},
                                   "models": {model: {"name": model}}}},
            "model": f"chatd/{model}", "autoupdate": False, "share": "disabled",
        }, option=orjson.OPT_INDENT_2))
        _seed_opencode_config_dir(home / ".config" / "opencode", pinned_versions()["opencode"])
        agent_env = OPENCODE_ENV | {"OPENCODE_CONFIG": str(config), KEY_ENV: api_key}
        argv = [str(agents.opencode), "run", "--title", TITLE, "-m", f"chatd/{model}", *args, prompt]
        return _run(argv, home, agent_env, env, cwd, timeout)


def explain(done: subprocess.CompletedProcess[str]) -> str:
    """The exit status and both outputs, for an assertion message."""
    return f"exit status {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


def _seed_opencode_config_dir(directory: Path, version: str) -> None:
    """Make opencode's global config dir look installed, so it does not npm-install @opencode-ai/plugin.

    At start-up opencode installs `@opencode-ai/plugin` into every config
    directory it can write, from the npm registry, unless the directory has a
    `node_modules` and its package-lock.json already names every dependency of
    its package.json.
    """
    dependencies = {"@opencode-ai/plugin": version}
    (directory / "node_modules").mkdir(parents=True)
    (directory / "package.json").write_bytes(orjson.dumps({"dependencies": dependencies}))
    (directory / "package-lock.json").write_bytes(orjson.dumps(
        {"lockfileVersion": 3, "packages": {"": {"dependencies": dependencies}}}))


def _toml_string(value: str) -> str:
    return orjson.dumps(value).decode()  # a JSON string is a valid TOML basic string


@contextlib.contextmanager
def _home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="chatd-agent-home-") as name:
        yield Path(name)


def _run(argv: list[str], home: Path, agent_env: Mapping[str, str], extra: Mapping[str, str] | None,
         cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "LANG": "C.UTF-8",
           "TERM": "dumb", "NO_COLOR": "1", "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_CACHE_HOME": str(home / ".cache"),
           "XDG_STATE_HOME": str(home / ".local" / "state"), **agent_env, **(extra or {})}
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr) from None
    finally:
        _kill_group(process)  # what the agent left running (a shell it started, a background task)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.returncode is None and process.poll() is None:
        process.wait()

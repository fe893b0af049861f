"""Install the pinned coding agents once per lock file, into a cache shared by runs.

    python -m tests.agents.install            # install if needed; print "name path" per agent
    python -m tests.agents.install --lock     # re-resolve package-lock.json from package.json

`npm ci` runs into `$CHATD_AGENTS_DIR/<hash>` (default `~/.cache/chatd-agents/<hash>`,
the hash being that of package-lock.json), so a changed pin lands in a new
directory and an unchanged one is never installed twice. A directory counts as
complete only once every agent answered `--version` with its pinned version
and `.complete` was written; until then it is rebuilt from scratch.

Each agent ships its program as a platform package among its optional
dependencies (a native binary inside the npm tarball); the two install
scripts (Claude Code's `install.cjs`, opencode's `postinstall.mjs`) only copy
that binary over a placeholder. `npm ci --ignore-scripts` followed by running
those scripts here keeps that step explicit whatever npm's script policy is.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_JSON = HERE / "package.json"
LOCK = HERE / "package-lock.json"
PACKAGES = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex", "opencode": "opencode-ai"}
NPM_TIMEOUT_S = 900


class InstallError(RuntimeError):
    """npm or an agent's install step failed; the message carries their output."""


@dataclass(frozen=True)
class Agents:
    """Where the installed agents' programs are (`node_modules/.bin/<name>`)."""

    root: Path
    claude: Path
    codex: Path
    opencode: Path

    @classmethod
    def at(cls, root: Path) -> Agents:
        bin_dir = root / "node_modules" / ".bin"
        return cls(root, **{name: bin_dir / name for name in PACKAGES})


def tools_available() -> str:
    """Why the agents cannot be installed here ("" when node and npm are on PATH)."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not on PATH" if missing else ""


def lock_hash(lock: Path = LOCK) -> str:
    return hashlib.sha256(lock.read_bytes()).hexdigest()[:16]


def cache_root() -> Path:
    if os.environ.get("CHATD_AGENTS_DIR"):
        return Path(os.environ["CHATD_AGENTS_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "chatd-agents"


def pinned_versions(lock: Path = LOCK) -> dict[str, str]:
    packages = json.loads(lock.read_text())["packages"]
    return {name: packages[f"node_modules/{package}"]["version"] for name, package in PACKAGES.items()}


def ensure_installed(root: Path | None = None) -> Agents:
    """The agents of the current lock file, installed first if their directory is not complete."""
    problem = tools_available()
    if problem:
        raise InstallError(f"cannot install the agents: {problem}")
    root = root or cache_root()
    target = root / lock_hash()
    if (target / ".complete").is_file():
        return Agents.at(target)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{target.name}.lock"):
        if not (target / ".complete").is_file():  # another process may have finished meanwhile
            _build(target)
    return Agents.at(target)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(target: Path) -> None:
    """npm ci in a fresh sibling directory, the install scripts, a version check, then rename into place."""
    work = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    try:
        shutil.copy2(PACKAGE_JSON, work / "package.json")
        shutil.copy2(LOCK, work / "package-lock.json")
        _npm(["ci", "--ignore-scripts"], work)
        _run_install_scripts(work)
        agents = Agents.at(work)
        versions = {name: _version(getattr(agents, name)) for name in PACKAGES}
        for name, pinned in pinned_versions().items():
            if pinned not in versions[name]:
                raise InstallError(f"{name} --version says {versions[name]!r}, expected {pinned}")
        (work / ".complete").write_text(json.dumps(versions, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _npm(args: list[str], cwd: Path) -> None:
    env = os.environ | {"npm_config_update_notifier": "false", "npm_config_fund": "false",
                        "npm_config_audit": "false", "npm_config_loglevel": "error"}
    done = subprocess.run(["npm", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=NPM_TIMEOUT_S)
    if done.returncode:
        raise InstallError(f"npm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def _run_install_scripts(work: Path) -> None:
    """Each locked package's own install scripts, in npm's order, run in its directory as npm would."""
    packages = json.loads((work / "package-lock.json").read_text())["packages"]
    for where, entry in packages.items():
        directory = work / where
        if not where or not entry.get("hasInstallScript") or not directory.is_dir():
            continue  # optional packages for other platforms are in the lock but not on disk
        scripts = json.loads((directory / "package.json").read_text()).get("scripts", {})
        for stage in ("preinstall", "install", "postinstall"):
            if stage in scripts:
                done = subprocess.run(["sh", "-c", scripts[stage]], cwd=directory, capture_output=True,
                                      text=True, timeout=NPM_TIMEOUT_S)
                if done.returncode:
                    raise InstallError(f"{where} {stage} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def _version(program: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="chatd-agent-version-") as home:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "CODEX_HOME": home,
               "XDG_CONFIG_HOME": home, "XDG_DATA_HOME": home, "XDG_CACHE_HOME": home, "XDG_STATE_HOME": home,
               "DISABLE_AUTOUPDATER": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1"}
        done = subprocess.run([str(program), "--version"], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise InstallError(f"{program} --version failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def relock() -> None:
    """Re-resolve package-lock.json from package.json against the registry npm is configured with.

    A platform package the registry does not serve (404) is left out of the
    lock by npm, but still named in its parent's `optionalDependencies`, which
    `npm ci` then reports as "Missing … from lock file"; such names are dropped
    from the parent's entry so that the lock installs what the registry has.
    """
    with tempfile.TemporaryDirectory(prefix="chatd-agents-lock-") as scratch:
        work = Path(scratch)
        shutil.copy2(PACKAGE_JSON, work / "package.json")
        _npm(["install", "--package-lock-only", "--ignore-scripts"], work)
        lock = json.loads((work / "package-lock.json").read_text())
    packages = lock["packages"]
    present = {where.rpartition("node_modules/")[2] for where in packages if where}
    for entry in packages.values():
        optional = entry.get("optionalDependencies")
        if optional:
            entry["optionalDependencies"] = {name: spec for name, spec in optional.items() if name in present}
    LOCK.write_text(json.dumps(lock, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.agents.install", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lock", action="store_true", help="re-resolve package-lock.json, then install")
    args = parser.parse_args(argv)
    try:
        if args.lock:
            relock()
        agents = ensure_installed()
    except (InstallError, subprocess.TimeoutExpired) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    for name in PACKAGES:
        sys.stdout.write(f"{name} {getattr(agents, name)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

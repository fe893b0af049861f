"""The `agents` marker, and the pinned agents installed once per session (or why these tests skip)."""

from __future__ import annotations

import pytest

from .install import Agents, InstallError, ensure_installed, tools_available

MARKER = "agents: runs a real coding agent (Claude Code, Codex CLI, opencode) installed from npm"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


@pytest.fixture(scope="session")
def agents() -> Agents:
    """The installed agents; skips when node or npm is missing, fails when npm cannot install them."""
    problem = tools_available()
    if problem:
        pytest.skip(f"the coding agents are installed with npm and run by node: {problem}")
    try:
        return ensure_installed()
    except InstallError as exc:
        pytest.fail(f"installing the pinned agents failed: {exc}", pytrace=False)

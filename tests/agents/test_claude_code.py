"""Claude Code (`claude -p`) through chatd's Anthropic Messages surface (`ANTHROPIC_BASE_URL=…/v1/chat`).

Skipped until chatd has that surface; test_harness.py proves the harness against a fake meanwhile.
"""

from __future__ import annotations

import functools

import pytest

from chat_middleware.surfaces import ROUTES

from . import scenarios
from .run import run_claude

if ("POST", "/v1/messages") not in ROUTES:  # skipped until chatd routes the path
    pytest.skip("chatd has no Anthropic Messages surface (POST /v1/chat/v1/messages) yet", allow_module_level=True)
pytestmark = pytest.mark.agents


@pytest.fixture
def agent(gateway, agents):
    # No retries: a failing answer shows at once in the output instead of after minutes of backoff
    return functools.partial(run_claude, gateway.url + "/v1/chat", api_key="unused", agents=agents, timeout=90,
                             env={"CLAUDE_CODE_MAX_RETRIES": "0"})


@pytest.mark.parametrize("model, fake, upstream_model, path", [
    *scenarios.ROUTES, ("anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5", "/v1/messages")])
def test_prints_the_upstreams_answer(agent, upstreams, tmp_path, model, fake, upstream_model, path):
    scenarios.prints_the_upstreams_answer(agent, upstreams, tmp_path, model, fake, upstream_model, path)


def test_runs_the_upstreams_bash_call_and_sends_back_its_output(agent, openrouter, tmp_path):
    scenarios.runs_the_upstreams_tool_call(agent, openrouter, tmp_path, "openrouter/moonshotai/kimi-k2",
                                           "moonshotai/kimi-k2", "Bash",
                                           {"command": scenarios.COMMAND, "description": "Write the marker file"})

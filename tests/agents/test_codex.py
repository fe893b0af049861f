"""Codex CLI (`codex exec`) through chatd's Responses surface (a `wire_api = "responses"` provider at …/v1/chat).

Skipped until chatd has that surface; test_harness.py proves the harness against a fake meanwhile.
"""

from __future__ import annotations

import functools

import pytest

from chat_middleware.surfaces import ROUTES

from . import scenarios
from .run import run_codex

if ("POST", "/responses") not in ROUTES:  # skipped until chatd routes the path
    pytest.skip("chatd has no Responses surface (POST /v1/chat/responses) yet", allow_module_level=True)
pytestmark = pytest.mark.agents

NO_RETRIES = ("-c", "model_providers.chatd.request_max_retries=0", "-c", "model_providers.chatd.stream_max_retries=0")
"""A failing answer shows at once instead of after 30 attempts."""


@pytest.fixture
def agent(gateway, agents):
    return functools.partial(run_codex, gateway.url + "/v1/chat", api_key="unused", agents=agents, timeout=90,
                             args=NO_RETRIES)


@pytest.mark.parametrize("model, fake, upstream_model, path", scenarios.ROUTES)
def test_prints_the_upstreams_answer(agent, upstreams, tmp_path, model, fake, upstream_model, path):
    scenarios.prints_the_upstreams_answer(agent, upstreams, tmp_path, model, fake, upstream_model, path)


def test_runs_the_upstreams_exec_command_call_and_sends_back_its_output(agent, openrouter, tmp_path):
    scenarios.runs_the_upstreams_tool_call(agent, openrouter, tmp_path, "openrouter/moonshotai/kimi-k2",
                                           "moonshotai/kimi-k2", "exec_command", {"cmd": scenarios.COMMAND})

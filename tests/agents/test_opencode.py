"""opencode (`opencode run`) through chatd's Chat Completions surface, to a fake Ollama and an OpenAI-compatible fake."""

from __future__ import annotations

import functools

import pytest

from . import scenarios
from .run import run_opencode

pytestmark = pytest.mark.agents


@pytest.fixture
def agent(gateway, agents):
    return functools.partial(run_opencode, gateway.url + "/v1/chat", api_key="unused", agents=agents, timeout=90)


def test_prints_the_answer_of_ollama(agent, upstreams, tmp_path):
    scenarios.prints_the_upstreams_answer(agent, upstreams, tmp_path, *scenarios.ROUTES[0])
    assert "bash" in [tool["function"]["name"] for tool in upstreams["ollama"].requests[0].json["tools"]]


def test_runs_the_upstreams_bash_call_and_sends_back_its_output(agent, openrouter, tmp_path):
    scenarios.runs_the_upstreams_tool_call(agent, openrouter, tmp_path, "openrouter/moonshotai/kimi-k2",
                                           "moonshotai/kimi-k2", "bash",
                                           {"command": scenarios.COMMAND, "description": "Write the marker file"})

"""The harness itself: Claude Code and Codex against the fake Anthropic and Responses upstreams.

Each run is a whole agent turn: the fake asks for a shell command, the agent
runs it, sends its output back, and prints the fake's final answer. That the
fake saw nothing but those two chat calls proves the offline settings hold;
that it accepted them checks the fakes' request checks against real clients.
"""

from __future__ import annotations

import orjson
import pytest

from tests.fakes import FakeUpstream, Reply
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.responses import FakeResponses

from .run import explain, run_claude, run_codex

pytestmark = pytest.mark.agents

KEY = "sk-harness-test-key"
MODEL = "fake-model"


@pytest.fixture
def anthropic():
    with FakeAnthropic(api_key=KEY, models=(MODEL,)) as server:
        yield server


@pytest.fixture
def responses():
    with FakeResponses(api_key=KEY, base_path="/v1/chat", models=(MODEL,)) as server:
        yield server


def script(fake: FakeUpstream, tool: str, arguments: dict) -> None:
    fake.replies[MODEL] = [Reply(text="", tool_calls=[{"name": tool, "arguments": arguments}]),
                           Reply(text="All done, the marker is there.")]


def test_claude_runs_a_bash_call_and_prints_the_answer(anthropic, agents, tmp_path):
    command = "echo claude-marker > marker.txt && echo claude-printed"
    script(anthropic, "Bash", {"command": command, "description": "Write the marker file"})
    done = run_claude(anthropic.url, "Write the marker", model=MODEL, api_key=KEY, cwd=tmp_path, agents=agents,
                      timeout=60)
    assert done.returncode == 0 and "All done, the marker is there." in done.stdout, explain(done)
    assert (tmp_path / "marker.txt").read_text() == "claude-marker\n"
    assert [(r.method, r.path, dict(r.query)) for r in anthropic.requests] == [
        ("POST", "/v1/messages", {"beta": "true"})] * 2
    first, second = anthropic.requests
    assert first.headers["x-api-key"] == KEY and first.headers["anthropic-version"] == "2023-06-01"
    assert first.json["stream"] is True and "Bash" in [tool["name"] for tool in first.json["tools"]]
    *_, call, result = second.json["messages"]
    [tool_use] = call["content"]
    assert tool_use["type"] == "tool_use" and tool_use["input"]["command"] == command
    [tool_result] = result["content"]
    assert tool_result["tool_use_id"] == tool_use["id"] and tool_result["content"] == "claude-printed"


def test_codex_runs_an_exec_command_call_and_prints_the_answer(responses, agents, tmp_path):
    command = "echo codex-marker > marker.txt && echo codex-printed"
    script(responses, "exec_command", {"cmd": command})
    done = run_codex(responses.url + "/v1/chat", "Write the marker", model=MODEL, api_key=KEY, cwd=tmp_path,
                     agents=agents, timeout=60)
    assert done.returncode == 0 and "All done, the marker is there." in done.stdout, explain(done)
    assert (tmp_path / "marker.txt").read_text() == "codex-marker\n"
    assert [(r.method, r.path) for r in responses.requests] == [("POST", "/v1/chat/responses")] * 2
    first, second = responses.requests
    assert first.headers["authorization"] == f"Bearer {KEY}" and first.json["stream"] is True
    assert "exec_command" in [tool.get("name") for tool in first.json["tools"]]
    *_, call, result = second.json["input"]
    assert call["type"] == "function_call" and orjson.loads(call["arguments"]) == {"cmd": command}
    assert result["type"] == "function_call_output" and result["call_id"] == call["call_id"]
    assert "codex-printed" in result["output"]

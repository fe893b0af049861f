"""The two things DESIGN §9 asks of every agent through chatd, written once for all three.

An agent is given as `run(prompt, model=…, cwd=…)` (one of run.py's functions
with chatd's base URL bound). Behind chatd the upstream is a fake that speaks
Chat Completions or Ollama, so what the agent sent back after a tool call is
read there the same way whichever client API the agent speaks.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from tests.fakes import FakeUpstream, Reply

from .run import explain

Run = Callable[..., subprocess.CompletedProcess[str]]
ROUTES = [  # (model asked of chatd, fake name, model the fake sees, path the fake is called on)
    ("qwen3:8b", "ollama", "qwen3:8b", "/api/chat"),
    ("openrouter/moonshotai/kimi-k2", "openrouter", "moonshotai/kimi-k2", "/v1/chat/completions"),
]
ANSWER = "The upstream says the sky is teal today."
PROMPT = "What colour is the sky?"
TOOL_PROMPT = "Write the marker file"
MARKER = "chatd-agent-marker-5e1"
COMMAND = f"echo {MARKER} > marker.txt && echo {MARKER}-printed"


def prints_the_upstreams_answer(run: Run, upstreams: Mapping[str, FakeUpstream], tmp_path: Path,
                                model: str, fake: str, upstream_model: str, path: str) -> None:
    """One prompt, one upstream call on the route's path, the upstream's text on stdout."""
    upstream = upstreams[fake]
    upstream.replies[upstream_model] = Reply(text=ANSWER)
    done = run(PROMPT, model=model, cwd=tmp_path)
    assert done.returncode == 0 and ANSWER in done.stdout, explain(done)
    calls = [(r.path, r.json.get("stream")) for r in upstream.requests]
    assert len(calls) == 1, f"one chat call expected (a second, stream False, is an agent's fallback): {calls}"
    [sent] = upstream.requests
    assert sent.path == path and sent.json["model"] == upstream_model
    assert PROMPT in orjson.dumps(sent.json["messages"]).decode()


def runs_the_upstreams_tool_call(run: Run, upstream: FakeUpstream, tmp_path: Path, model: str,
                                 upstream_model: str, tool: str, arguments: dict[str, Any]) -> None:
    """The upstream asks for a shell command; it runs in the agent's cwd and its output comes back next request.

    `upstream` speaks Chat Completions (its history carries `tool_calls` and `tool` messages).
    """
    upstream.replies[upstream_model] = [Reply(text="", tool_calls=[{"name": tool, "arguments": arguments}]),
                                        Reply(text="The marker file is written.")]
    done = run(TOOL_PROMPT, model=model, cwd=tmp_path)
    assert done.returncode == 0, explain(done)
    assert (tmp_path / "marker.txt").read_text().strip() == MARKER, explain(done)
    assert "The marker file is written." in done.stdout, explain(done)
    first, second = upstream.requests
    assert first.json["model"] == second.json["model"] == upstream_model
    call, result = _call_and_result(second.json["messages"])
    assert call["function"]["name"] == tool and orjson.loads(call["function"]["arguments"]) == arguments
    assert f"{MARKER}-printed" in _text(result["content"])


def _call_and_result(messages: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The last assistant tool call and the tool message that answers it."""
    calls = [call for m in messages if m["role"] == "assistant" for call in m.get("tool_calls") or ()]
    assert calls, f"no tool call in the history: {messages}"
    answers = [m for m in messages if m["role"] == "tool" and m.get("tool_call_id") == calls[-1]["id"]]
    assert len(answers) == 1, f"tool call {calls[-1]['id']} answered {len(answers)} times: {messages}"
    return calls[-1], answers[0]


def _text(content: str | list[dict[str, Any]]) -> str:
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)

"""Hostile bodies on the Anthropic surface (hypothesis over HTTP): a 4xx in Anthropic's error shape, never a
500 unless an upstream really failed, and chatd keeps serving. Fixtures are test_hostile's."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_hostile import client, encode, hostile, json_values, still_serving, upstream_calls  # noqa: F401

PATH = "/v1/chat/v1/messages"
MODELS = st.sampled_from(["qwen3:8b", "kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2",
                          "anthropic/claude-sonnet-4-5", "claude", "smart"])
FIELDS = ("messages", "system", "max_tokens", "stream", "tools", "tool_choice", "thinking", "stop_sequences",
          "temperature", "top_p", "top_k", "metadata", "output_config", "context_management", "cache_control")
BLOCK_KEYS = ("type", "text", "source", "id", "name", "input", "tool_use_id", "content", "is_error",
              "thinking", "signature", "data", "cache_control")
KINDS = st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking", "document",
                         "base64", "url", "custom", "web_search_20250305"])
blocks = st.dictionaries(st.sampled_from(BLOCK_KEYS), KINDS | json_values, max_size=5)
turns = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", 3]),
                               "content": st.text(max_size=8) | st.lists(blocks, max_size=3) | json_values})


def call(client: httpx.Client, upstream_calls, content: bytes) -> httpx.Response:
    before = upstream_calls()
    try:
        response = client.post(PATH, content=content, headers={"anthropic-version": "2023-06-01"})
    except httpx.HTTPError as exc:
        pytest.fail(f"{content[:200]!r}…: no valid HTTP response ({exc!r})")
    if response.status_code >= 400:
        body = response.json()
        assert body["type"] == "error" and isinstance(body["error"]["type"], str) and body["error"]["message"]
    if response.status_code >= 500:
        assert upstream_calls() > before and "x-chatd-provider" in response.headers, response.text[:300]
    return response


@hostile
@given(model=MODELS, junk=st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1, max_size=4))
def test_wrong_types_in_known_fields(client, upstream_calls, model, junk):
    call(client, upstream_calls, encode({"model": model, "max_tokens": 16, "messages": [
        {"role": "user", "content": "hi"}], **junk}))


@hostile
@given(model=MODELS, messages=st.lists(turns, max_size=4), tools=st.lists(blocks, max_size=2))
def test_wrong_shapes_of_turns_blocks_and_tools(client, upstream_calls, model, messages, tools):
    call(client, upstream_calls, encode({"model": model, "max_tokens": 16, "messages": messages, "tools": tools}))


@hostile
@given(body=st.binary(max_size=1024) | json_values.map(encode))
def test_arbitrary_bodies(client, upstream_calls, body):
    call(client, upstream_calls, body)

"""Hostile bodies on the Responses surface (hypothesis over HTTP): a 4xx in OpenAI's shape, never a 500
unless an upstream really failed, and chatd keeps serving. Fixtures and checks are test_hostile's."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.test_hostile import (  # noqa: F401  (fixtures)
    call, client, encode, hostile, json_values, still_serving, upstream_calls,
)

PATH = "/v1/chat/responses"
MODELS = st.sampled_from(["qwen3:8b", "kimi-k2.6:cloud", "openrouter/moonshotai/kimi-k2", "openai/gpt-5", "smart"])
FIELDS = ("input", "instructions", "tools", "tool_choice", "text", "reasoning", "max_output_tokens", "stream",
          "temperature", "top_p", "parallel_tool_calls", "previous_response_id", "store", "include", "metadata",
          "prompt_cache_key", "client_metadata", "background", "conversation", "truncation")
ITEM_KEYS = ("type", "role", "content", "call_id", "name", "arguments", "output", "id", "summary",
             "encrypted_content", "namespace", "status")
TYPES = st.sampled_from(["message", "function_call", "function_call_output", "reasoning", "custom_tool_call",
                         "item_reference", "web_search_call", "input_text", "output_text", "namespace",
                         "function", "web_search", "custom"])
items = st.dictionaries(st.sampled_from(ITEM_KEYS), TYPES | json_values, max_size=5)


@hostile
@given(model=MODELS, junk=st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1, max_size=4))
def test_wrong_types_in_known_fields(client, upstream_calls, model, junk):
    call(client, upstream_calls, "POST", PATH, encode({"model": model, "input": "hi", **junk}))


@hostile
@given(model=MODELS, input_items=st.lists(items, max_size=4), tools=st.lists(items, max_size=3))
def test_wrong_shapes_of_items_and_tools(client, upstream_calls, model, input_items, tools):
    call(client, upstream_calls, "POST", PATH, encode({"model": model, "input": input_items, "tools": tools}))


@hostile
@given(body=st.binary(max_size=1024) | json_values.map(encode))
def test_arbitrary_bodies(client, upstream_calls, body):
    call(client, upstream_calls, "POST", PATH, body)

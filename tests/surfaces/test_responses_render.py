"""Canonical answers → Responses objects and events, checked against the openai SDK's own types and parser."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai._models import validate_type
from openai.types.responses import Response, ResponseStreamEvent

from chat_middleware.errors import UpstreamRateLimited, UpstreamStreamError
from chat_middleware.routing import Target
from chat_middleware.streams import Chunk, Chunks
from chat_middleware.surfaces.responses_render import ResponsesRenderer
from chat_middleware.surfaces.responses_request import responses_context, responses_request

from .test_responses_request import codex_request

TARGET = Target(provider="kimi", upstream_model="kimi-for-coding", rule="tier", registered=True)
SPAWN = "multi_agent_v1__spawn_agent"


def renderer(body: dict | None = None, passthrough: bool = False) -> ResponsesRenderer:
    _, context = responses_request(body or codex_request())
    rendered = ResponsesRenderer("smart", context)
    rendered.serving(TARGET, passthrough)
    return rendered


def events(sse: bytes) -> list[dict]:
    """Each event's data, after checking its `event:` line names the same type and the SDK accepts it."""
    out = []
    for block in sse.decode().split("\n\n")[:-1]:
        head, data = block.split("\n")
        event = orjson.loads(data.removeprefix("data: "))
        assert head == f"event: {event['type']}"
        validate_type(type_=ResponseStreamEvent, value=event)
        out.append(event)
    return out


def delta(**fields) -> Chunk:
    return Chunk(data={"id": "chatcmpl-1", "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": fields, "finish_reason": None}]})


def finish_chunk(reason: str) -> Chunk:
    return Chunk(data={"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})


def fragment(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> Chunk:
    call: dict = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return delta(tool_calls=[call])


def counts(prompt: int, completion: int) -> SimpleNamespace:
    return SimpleNamespace(prompt_tokens=prompt, completion_tokens=completion)


USAGE = Chunk(data={"choices": [], "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
                                             "prompt_tokens_details": {"cached_tokens": 100},
                                             "completion_tokens_details": {"reasoning_tokens": 12}}})
STREAM = [
    delta(role="assistant", reasoning_content="The user wants "), delta(reasoning_content="a listing."),
    delta(content="Listing "), delta(content="now."),
    fragment(0, '{"cmd":', "call_ls", "exec_command"), fragment(0, '"ls"}'),
    fragment(1, "", "call_sp", SPAWN), fragment(1, '{"task":'), fragment(1, '"count"}'),
    finish_chunk("tool_calls"), USAGE,
]


def completion(message: dict, finish_reason: str = "stop", usage: dict | None = None) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "kimi-for-coding",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}],
            "usage": usage or {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}}


def sdk_stream(sse: bytes) -> tuple[list, Response | None]:
    """What `client.responses.stream()` makes of the bytes: the SDK's own SSE parser and accumulator."""
    transport = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=sse))
    client = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1/chat", max_retries=0,
                           http_client=httpx.Client(transport=transport))
    with client.responses.stream(model="smart", input="hi") as stream:
        seen = list(stream)
        return seen, stream.get_final_response() if seen[-1].type == "response.completed" else None


# ----- non-streamed


def test_a_text_completion_is_a_response_the_sdk_validates():
    body = renderer().completion(completion({"content": "Hello!"}, usage={
        "prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11,
        "prompt_tokens_details": {"cached_tokens": 5}}), b"", False, 12.0)
    response = Response.model_validate(orjson.loads(body))
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.model == "smart" and response.output_text == "Hello!" and response.error is None
    assert response.usage.input_tokens == 8 and response.usage.output_tokens == 3 and response.usage.total_tokens == 11
    assert response.usage.input_tokens_details.cached_tokens == 5
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.tool_choice == "auto" and response.parallel_tool_calls is True and response.store is False
    assert [tool.type for tool in response.tools] == ["function"] * 7 + ["namespace", "web_search"]
    assert response.reasoning.summary == "auto" and response.previous_response_id is None


def test_reasoning_and_tool_calls_come_back_under_the_clients_own_names():
    custom = {"type": "custom", "name": "apply_patch", "description": "Edit files."}
    body = {**codex_request(), "tools": [*codex_request()["tools"], custom]}
    raw = renderer(body).completion(completion({
        "content": None, "reasoning": "Spawn, then patch.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": SPAWN, "arguments": '{"task":"t"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "apply_patch", "arguments": '{"input":"*** P"}'}},
            {"id": "call_3", "type": "function", "function": {"name": "exec_command", "arguments": ""}},
        ]}, "tool_calls"), b"", False, 1.0)
    response = Response.model_validate(orjson.loads(raw))
    reasoning, spawn, patch, shell = response.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Spawn, then patch."
    assert (spawn.type, spawn.name, spawn.namespace, spawn.call_id, spawn.arguments) == (
        "function_call", "spawn_agent", "multi_agent_v1", "call_1", '{"task":"t"}')
    assert (patch.type, patch.name, patch.input, patch.call_id) == (
        "custom_tool_call", "apply_patch", "*** P", "call_2")
    assert shell.arguments == "{}" and shell.namespace is None
    assert response.status == "completed" and response.output_text == ""


def test_tool_calls_without_an_id_or_sharing_one_get_ids_of_their_own():
    call = {"type": "function", "function": {"name": "get_goal", "arguments": "{}"}}
    raw = renderer().completion(completion({"tool_calls": [{**call, "id": "0"}, {**call, "id": "0"}, call]},
                                           "tool_calls"), b"", False, 1.0)
    ids = [item.call_id for item in Response.model_validate(orjson.loads(raw)).output]
    assert ids[0] == "0" and len(set(ids)) == 3 and all(ids)


@pytest.mark.parametrize(("finish_reason", "reason"), [("length", "max_output_tokens"),
                                                        ("content_filter", "content_filter")])
def test_a_cut_off_completion_is_incomplete(finish_reason, reason):
    raw = renderer().completion(completion({"content": "Half"}, finish_reason), b"", False, 1.0)
    response = Response.model_validate(orjson.loads(raw))
    assert response.status == "incomplete" and response.incomplete_details.reason == reason
    assert response.output[0].status == "incomplete" and response.output_text == "Half"


def test_passthrough_answers_are_the_upstreams_bytes():
    raw = b'{"id":"resp_up","object":"response","status":"completed"}'
    assert renderer(passthrough=True).completion({}, raw, True, 1.0) is raw


# ----- streamed


def test_a_canonical_stream_becomes_the_exact_responses_event_sequence():
    rendered = renderer()
    sse = rendered.chunks(Chunks(STREAM[:5])) + rendered.chunks(Chunks(STREAM[5:]))
    sse += rendered.finish(counts(120, 30), 40.0)
    seen = events(sse)
    assert [event["type"].removeprefix("response.") for event in seen] == [
        "created", "in_progress",
        "output_item.added", "reasoning_summary_part.added", "reasoning_summary_text.delta",
        "reasoning_summary_text.delta", "reasoning_summary_text.done", "reasoning_summary_part.done",
        "output_item.done",
        "output_item.added", "content_part.added", "output_text.delta", "output_text.delta", "output_text.done",
        "content_part.done", "output_item.done",
        "output_item.added", "function_call_arguments.delta", "function_call_arguments.delta",
        "function_call_arguments.done", "output_item.done",
        "output_item.added", "function_call_arguments.delta", "function_call_arguments.delta",
        "function_call_arguments.done", "output_item.done",
        "completed",
    ]
    assert [event["sequence_number"] for event in seen] == list(range(len(seen)))
    added = [event["output_index"] for event in seen if event["type"] == "response.output_item.added"]
    assert added == [0, 1, 2, 3]
    assert seen[0]["response"]["status"] == "in_progress" and seen[0]["response"]["output"] == []
    message = seen[15]["item"]
    assert message["content"][0]["text"] == "Listing now." and message["status"] == "completed"
    spawn = seen[25]["item"]
    assert (spawn["name"], spawn["namespace"], spawn["call_id"], spawn["arguments"]) == (
        "spawn_agent", "multi_agent_v1", "call_sp", '{"task":"count"}')
    final = seen[-1]["response"]
    assert final["id"] == seen[0]["response"]["id"] and final["status"] == "completed"
    assert [item["type"] for item in final["output"]] == ["reasoning", "message", "function_call", "function_call"]
    assert final["usage"] == {
        "input_tokens": 120, "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
        "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 150}


def test_the_sdk_parses_and_accumulates_the_stream():
    rendered = renderer()
    sse = rendered.chunks(Chunks(STREAM)) + rendered.finish(counts(120, 30), 40.0)
    seen, final = sdk_stream(sse)
    assert seen[0].type == "response.created" and seen[-1].type == "response.completed"
    assert final.output_text == "Listing now." and final.usage.output_tokens == 30
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(call.name, call.arguments) for call in calls] == [("exec_command", '{"cmd":"ls"}'),
                                                              ("spawn_agent", '{"task":"count"}')]
    texts = [event.delta for event in seen if event.type == "response.output_text.delta"]
    assert "".join(texts) == final.output_text


def test_a_stream_cut_off_by_the_token_limit_ends_in_response_incomplete():
    rendered = renderer()
    sse = rendered.chunks(Chunks([delta(role="assistant", content="Once upon"), finish_chunk("length")]))
    seen = events(sse + rendered.finish(counts(5, 2), 1.0))
    assert [event["type"] for event in seen[-2:]] == ["response.output_item.done", "response.incomplete"]
    assert seen[-2]["item"]["status"] == "incomplete"
    assert seen[-1]["response"]["status"] == "incomplete"
    assert seen[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert "response.completed" not in {event["type"] for event in seen}


def test_an_empty_stream_still_opens_and_completes():
    rendered = renderer()
    seen = events(rendered.chunks(Chunks([finish_chunk("stop")])) + rendered.finish(counts(3, 0), 1.0))
    assert [event["type"] for event in seen] == ["response.created", "response.in_progress", "response.completed"]
    assert seen[-1]["response"]["output"] == []


def test_a_custom_tool_call_streams_its_input_whole():
    body = {**codex_request(), "tools": [{"type": "custom", "name": "apply_patch"}]}
    rendered = renderer(body)
    sse = rendered.chunks(Chunks([fragment(0, '{"input":"*** Begin', "call_p", "apply_patch"),
                                  fragment(0, ' Patch"}'), finish_chunk("tool_calls")]))
    seen = events(sse + rendered.finish(counts(1, 1), 1.0))
    assert [event["type"] for event in seen[2:-1]] == [
        "response.output_item.added", "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
        "response.output_item.done"]
    assert seen[3]["delta"] == seen[4]["input"] == "*** Begin Patch"
    assert seen[5]["item"]["type"] == "custom_tool_call" and seen[5]["item"]["input"] == "*** Begin Patch"


def test_a_late_fragment_of_a_closed_call_is_dropped_not_misfiled():
    rendered = renderer()
    sse = rendered.chunks(Chunks([fragment(0, '{"cmd":"ls"}', "call_a", "exec_command"),
                                  fragment(1, "{}", "call_b", "get_goal"), fragment(0, "junk")]))
    seen = events(sse + rendered.finish(counts(1, 1), 1.0))
    assert [item["arguments"] for item in seen[-1]["response"]["output"]] == ['{"cmd":"ls"}', "{}"]


# ----- failures and retries


def test_a_failure_mid_stream_is_response_failed_numbered_on():
    rendered = renderer()
    sent = events(rendered.chunks(Chunks([delta(role="assistant", content="Hi")])))
    failed = events(rendered.stream_error(UpstreamStreamError("upstream error: boom")))
    assert [event["type"] for event in failed] == ["response.failed"]
    assert failed[0]["sequence_number"] == sent[-1]["sequence_number"] + 1
    response = failed[0]["response"]
    assert response["status"] == "failed" and response["id"] == sent[0]["response"]["id"]
    assert response["error"] == {"code": "server_error", "message": "upstream error: boom"}
    assert "error" not in failed[0]  # a truthy top-level error would make the SDK raise instead of yield


def test_a_failure_before_anything_was_sent_still_opens_the_stream():
    seen = events(renderer().stream_error(UpstreamRateLimited("kimi: slow down")))
    assert [event["type"] for event in seen] == ["response.created", "response.in_progress", "response.failed"]
    assert seen[-1]["response"]["error"]["code"] == "rate_limit_exceeded"


def test_a_retry_starts_the_stream_afresh():
    rendered = renderer()
    rendered.chunks(Chunks([delta(role="assistant", content="lost")]))
    rendered.serving(TARGET)
    seen = events(rendered.chunks(Chunks([delta(content="kept")])) + rendered.finish(counts(1, 1), 1.0))
    assert seen[0]["sequence_number"] == 0 and seen[0]["type"] == "response.created"
    assert [item["content"][0]["text"] for item in seen[-1]["response"]["output"]] == ["kept"]


def test_passthrough_forwards_bytes_and_its_failure_continues_the_upstreams_numbers():
    upstream = (b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
                b'"response":{"id":"resp_up","status":"in_progress"}}\n\n'
                b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                b'"sequence_number":7,"item_id":"msg_1","output_index":0,"content_index":0,'
                b'"delta":"\\"sequence_number\\":99"}\n\n')
    rendered = renderer(passthrough=True)
    chunks = Chunks(sse=upstream, payloads=[line[6:] for line in upstream.split(b"\n") if line.startswith(b"data: ")])
    assert rendered.chunks(chunks) is upstream
    assert rendered.finish(counts(1, 1), 1.0) == b""
    failed = events(rendered.stream_error(UpstreamStreamError("upstream error: overloaded")))
    assert [(event["type"], event["sequence_number"]) for event in failed] == [("response.failed", 8)]
    assert failed[0]["response"]["id"] == "resp_up"


def test_a_stateful_request_passed_through_still_gets_a_failure_the_sdk_reads():
    body = {"model": "gpt-5", "input": [{"type": "item_reference", "id": "msg_1"}], "stream": True,
            "previous_response_id": "resp_prev", "store": True}
    rendered = ResponsesRenderer("gpt-5", responses_context(body))
    rendered.serving(TARGET, passthrough=True)
    failed = events(rendered.stream_error(UpstreamStreamError("upstream error: boom")))[-1]
    assert failed["response"]["previous_response_id"] == "resp_prev" and failed["response"]["store"] is False
    Response.model_validate(failed["response"])


def test_errors_before_the_answer_use_openais_shape():
    error = UpstreamRateLimited("kimi: slow down")
    assert orjson.loads(renderer().error_body(error)) == {
        "error": {"message": "kimi: slow down", "type": "rate_limit_error", "code": "rate_limited"}}
    assert renderer().stream_headers[0] == (b"content-type", b"text/event-stream")


# ----- the round trip


def test_a_rendered_tool_call_sent_back_pairs_with_its_output():
    raw = renderer().completion(completion({"content": "Spawning.", "reasoning_content": "Need help.", "tool_calls": [
        {"id": "call_9", "type": "function", "function": {"name": SPAWN, "arguments": '{"task":"t"}'}}]},
        "tool_calls"), b"", False, 1.0)
    output = orjson.loads(raw)["output"]
    follow_up = codex_request([*output, {"type": "function_call_output", "call_id": "call_9", "output": "agent 1"}])
    messages = responses_request(follow_up)[0]["messages"][4:]
    assert messages == [
        {"role": "assistant", "content": "Spawning.", "reasoning_content": "Need help.", "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": SPAWN, "arguments": '{"task":"t"}'}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "agent 1"},
    ]


# ----- any canonical stream

PIECE = st.one_of(
    st.builds(lambda text: delta(reasoning_content=text), st.text(min_size=1, max_size=5)),
    st.builds(lambda text: delta(reasoning=text), st.text(min_size=1, max_size=5)),
    st.builds(lambda text: delta(content=text), st.text(min_size=1, max_size=5)),
    st.builds(lambda index, name, arguments: fragment(index, arguments, f"call_{index}_{name}", name),
              st.integers(0, 2), st.sampled_from(["exec_command", SPAWN, "unknown"]), st.text(max_size=5)),
    st.builds(lambda index, arguments: fragment(index, arguments), st.integers(0, 2), st.text(max_size=5)),
    st.builds(finish_chunk, st.sampled_from(["stop", "tool_calls", "length", "content_filter"])),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(PIECE, max_size=12), st.integers(1, 4))
def test_any_canonical_stream_is_a_complete_sequence_the_sdk_accepts(pieces, reads):
    rendered = renderer()
    sse = b"".join(rendered.chunks(Chunks(pieces[i::reads])) for i in range(reads))
    seen = events(sse + rendered.finish(counts(1, 1), 1.0))
    assert [event["sequence_number"] for event in seen] == list(range(len(seen)))
    added = [event["output_index"] for event in seen if event["type"] == "response.output_item.added"]
    done = {event["output_index"]: event["item"] for event in seen if event["type"] == "response.output_item.done"}
    assert added == list(range(len(added))) == sorted(done)
    assert seen[-1]["type"] in ("response.completed", "response.incomplete")
    assert seen[-1]["response"]["output"] == [done[index] for index in added]
    sdk_stream(sse)  # the SDK's accumulator takes it whole

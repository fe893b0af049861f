"""The benchmark's Anthropic and Responses rows: the mock's answers as the official SDKs read them, every route
through chatd to the mock API it claims, the stream checks of both load generators, and the ×openai table."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator

import anthropic
import httpx
import openai
import orjson
import pytest

from bench.loadgen import Latency, LoadError, Throughput, asyncio_load, checked, latencies, request_headers, wrk
from bench.mock_replies import tokens
from bench.report import Row, surfaces
from bench.run import parse_args, routes_of
from bench.targets import (ANTHROPIC, BASE_ROUTE, CHATD, DIRECT, FLOOR, NATIVE, OLLAMA, OPENAI, RESPONSES, ROOT, ROUTES,
                           SURFACE_ROUTES, chatd_config, target)
from tests.harness import ChatdServer, write_config

TEXT = "".join(tokens(20))
SYSTEM, USER = "You are a terse assistant.", "Summarise the plot of Hamlet in one sentence, please."
PROVIDERS = {"mock/": "mock", "ollama/": "ollama", "mock-anthropic/": "mock_anthropic",
             "mock-responses/": "mock_responses"}


@pytest.fixture(scope="module")
def mock() -> Iterator[str]:
    process = subprocess.Popen([sys.executable, "-m", "bench.mock_upstream", "--port", "0"], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()


@pytest.fixture(scope="module")
def chatd(mock, tmp_path_factory) -> Iterator[ChatdServer]:
    with ChatdServer(write_config(tmp_path_factory.mktemp("bench"), chatd_config(mock))) as server:
        yield server


def by_api(mock: str) -> dict[str, int]:
    return httpx.get(mock + "/stats").json()["by_api"]


def test_the_anthropic_sdk_reads_the_mocks_message_and_its_stream(mock):
    with anthropic.Anthropic(base_url=mock, api_key="unused", max_retries=0) as client:
        message = client.messages.create(model="bench-model", max_tokens=256, system=SYSTEM,
                                         messages=[{"role": "user", "content": USER}])
        with client.messages.stream(model="bench-model", max_tokens=256, system=SYSTEM,
                                    messages=[{"role": "user", "content": USER}]) as stream:
            kinds = [event.type for event in stream]  # the SDK drops an event without its `event:` line
            streamed = stream.get_final_message()
    assert message.content[0].text == TEXT and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (24, 20)
    deltas = [kind for kind in kinds if kind == "content_block_delta"]
    assert [kind for kind in kinds if kind not in ("content_block_delta", "text")] == [
        "message_start", "content_block_start", "content_block_stop", "message_delta", "message_stop"]
    assert len(deltas) == 20
    assert streamed.content[0].text == TEXT and streamed.stop_reason == "end_turn"
    assert (streamed.usage.input_tokens, streamed.usage.output_tokens) == (24, 20)


def test_the_openai_sdk_reads_the_mocks_response_and_its_stream(mock):
    with openai.OpenAI(base_url=mock + "/v1", api_key="unused", max_retries=0) as client:
        response = client.responses.create(model="bench-model", input=[{"role": "system", "content": SYSTEM},
                                                                        {"role": "user", "content": USER}])
        # stream() insists on response.created first, content_part.added before the deltas, response.completed
        with client.responses.stream(model="bench-model", input=USER) as stream:
            events = list(stream)
            streamed = stream.get_final_response()
    assert response.output_text == TEXT and response.status == "completed"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (24, 20)
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert [event.type for event in events].count("response.output_text.delta") == 20
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert streamed.output_text == TEXT and streamed.usage.total_tokens == 44


def answer_text(api: str, body: bytes) -> str:
    """The text of a non-streamed answer in the surface's own shape."""
    data = orjson.loads(body)
    if api == ANTHROPIC:
        return data["content"][0]["text"]
    if api == RESPONSES:
        return data["output"][-1]["content"][0]["text"]
    if api == OLLAMA:
        return data["message"]["content"]
    if api == NATIVE:
        return data["content"]
    return data["choices"][0]["message"]["content"]


@pytest.mark.parametrize("route", list(ROUTES))
async def test_every_route_reaches_the_provider_and_mock_api_it_names_and_carries_the_text(route, mock, chatd):
    where, way = target(CHATD, route), ROUTES[route]
    url = chatd.url + where.path
    before = await asyncio.to_thread(by_api, mock)
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, content=where.plain, headers=request_headers(where.headers))
    checked(answer.status_code, answer.content, None)
    assert answer_text(way.surface, answer.content) == TEXT
    assert answer.headers["x-chatd-provider"] == PROVIDERS[way.model.split("/")[0] + "/"]
    streamed = await latencies(url, where.stream, 2, where.end, headers=where.headers)  # raises on a bad ending
    assert len(streamed.first_byte) == 2
    after = await asyncio.to_thread(by_api, mock)
    assert {api: after[api] - before[api] for api in after if after[api] != before[api]} == {way.upstream: 3}


async def test_the_asyncio_load_generator_counts_a_stream_without_its_end_as_an_error(mock):
    where = target(DIRECT, ANTHROPIC)
    good = await asyncio_load(mock + where.path, where.stream, 2, 0.1, where.headers, where.end)
    bad = await asyncio_load(mock + where.path, where.stream, 2, 0.1, where.headers, target(DIRECT, RESPONSES).end)
    assert good.requests > 0 and good.errors == 0
    assert bad.requests == 0 and bad.errors > 0


def test_a_stream_cut_short_fails_the_check():
    whole = b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(3)) + b'{"done":true}\n'
    checked(200, whole, b'"done":true')
    with pytest.raises(LoadError, match="stream ended without"):
        checked(200, whole.replace(b'{"done":true}\n', b""), b'"done":true')
    with pytest.raises(LoadError, match="HTTP 502"):
        checked(502, b"{}", None)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
async def test_wrk_counts_streams_whose_last_line_lacks_the_end(mock, tmp_path):
    where = target(DIRECT, RESPONSES)
    body = tmp_path / "body.json"
    body.write_bytes(where.stream)
    good, bad = await asyncio.gather(wrk(mock + where.path, body, 2, 1, [], where.headers, where.end),
                                     wrk(mock + where.path, body, 2, 1, [], where.headers, b"message_stop"))
    assert good.requests > 0 and good.errors == 0
    assert bad.requests > 0 and bad.errors == bad.requests


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
async def test_wrk_sends_a_rows_own_headers(tmp_path):
    heads: list[bytes] = []

    async def served(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Records each request head and answers a tiny 200, until the client closes."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                heads.append(head)
                await reader.readexactly(int(head.split(b"content-length: ")[1].split(b"\r\n")[0]))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(served, "127.0.0.1", 0)
    body = tmp_path / "body.json"
    body.write_bytes(b"{}")
    async with server:
        port = server.sockets[0].getsockname()[1]
        result = await wrk(f"http://127.0.0.1:{port}/", body, 1, 1, [],
                           {"Authorization": "Bearer k-1", **target(CHATD, "anthropic-openai").headers})
    assert result.requests > 0 and result.errors == 0 and heads
    assert b"\r\nauthorization: bearer k-1\r\n" in heads[0] and b"\r\nanthropic-version: 2023-06-01\r\n" in heads[0]
    assert b"\r\ncontent-type: application/json\r\n" in heads[0]


def test_surface_routes_run_on_the_first_server_only_unless_asked_and_bring_their_base():
    args = parse_args(["--servers", "hypercorn,uvicorn"])
    assert routes_of(args, "hypercorn") == list(ROUTES)
    assert routes_of(args, "uvicorn") == ["openai", "ollama"]
    assert routes_of(parse_args(["--servers", "hypercorn,uvicorn", "--every-server"]), "uvicorn") == list(ROUTES)
    assert parse_args(["--routes", "responses-ollama"]).routes == [BASE_ROUTE, "responses-ollama"]
    quick = parse_args(["--quick"]).routes
    assert quick[0] == BASE_ROUTE and {ROUTES[r].surface for r in quick} == {OPENAI, ANTHROPIC, RESPONSES}


def test_bad_routes_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--routes", "openai,anthropic"])
    assert exit_.value.code == 2 and "unknown route 'anthropic'" in capsys.readouterr().err


def row(server: str, app: str, route: str, plain: list[float], stream: list[float], cpu: float) -> Row:
    empty = Throughput(0, 1.0, 0, "wrk")
    timing = Latency(total=[0.001], first_byte=[0.001])
    return Row(server, app, route, 0.5, timing, timing, empty, empty, cpu, cpu * 2, 40.0,
               rounds={"plain": plain, "stream": stream})


def test_the_surface_table_divides_each_round_by_the_same_servers_openai_row():
    rows = [row("hypercorn", FLOOR, "openai", [3000, 3000], [2000, 2000], 300),
            row("hypercorn", CHATD, "openai", [2000, 1000], [1000, 1000], 400),
            row("uvicorn", CHATD, "openai", [9000, 9000], [9000, 9000], 100),
            row("hypercorn", CHATD, "anthropic-openai", [1000, 800], [500, 400], 500),
            row("uvicorn", CHATD, "ollama", [1, 1], [1, 1], 1)]
    lines = surfaces(rows)
    assert lines[0].startswith("| server | route | req/s ×openai (plain / stream)")
    assert lines[2] == "| hypercorn | anthropic-openai | 0.65 / 0.45 | +100 / +200 | +0.00 | +0.00 |"
    assert len(lines) == 4 and lines[3] == ""
    assert surfaces([r for r in rows if r.route not in SURFACE_ROUTES]) == []

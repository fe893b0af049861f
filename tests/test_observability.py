"""What operators see: Prometheus metrics, the JSON access log, and request ids end to end."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import httpx
import orjson
import pytest
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import Reply

HI = [{"role": "user", "content": "Hi"}]


def scrape(url: str, key: str | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /v1/chat/metrics (asked with client `key`), keyed by name and sorted labels."""
    response = httpx.get(url + "/v1/chat/metrics", headers={"authorization": f"Bearer {key}"} if key else {},
                         timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict, name: str, /, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (every client's, unless one is named)."""
    wanted = set(labels.items())
    return sum(value for (sample, found), value in samples.items() if sample == name and wanted <= set(found))


def delta(before: dict, after: dict, name: str, /, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "chatd.access"]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll a condition another thread makes true (the server logs after its last byte)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ----- metrics


def test_metrics_count_the_requests_made_by_provider_and_status(gateway, upstreams):
    sdk = OpenAI(base_url=gateway.url + "/v1/chat", api_key="unused", max_retries=0)
    before = scrape(gateway.url)
    for _ in range(3):
        sdk.chat.completions.create(model="qwen3:8b", messages=HI)
    chunks = list(sdk.chat.completions.create(model="router", messages=HI, stream=True))
    assert chunks
    httpx.post(gateway.url + "/v1/chat/completions", json={"model": "", "messages": HI}, timeout=10)
    after = scrape(gateway.url)

    assert delta(before, after, "chatd_requests_total", provider="ollama", status="200") == 3
    assert delta(before, after, "chatd_requests_total", provider="openrouter", status="200") == 1
    assert delta(before, after, "chatd_requests_total", provider="none", status="400") == 1
    assert delta(before, after, "chatd_request_duration_seconds_count", provider="ollama") == 3
    assert delta(before, after, "chatd_time_to_first_token_seconds_count", provider="openrouter") == 1
    assert delta(before, after, "chatd_time_to_first_token_seconds_count", provider="ollama") == 0  # not streamed
    tokens_out = delta(before, after, "chatd_tokens_total", provider="ollama", direction="out")
    assert tokens_out == 3 * len(Reply().text.split())
    assert after[("chatd_in_flight", (("provider", "ollama"),))] == 0


def test_metrics_count_upstream_errors_retries_and_fallbacks(make_chatd, upstreams):
    chatd = make_chatd(base="retries = 1\nretry_backoff_s = 0.01\ncooldown_s = 0")
    upstreams["kimi"].replies["kimi-for-coding"] = Reply(status=503, error="overloaded")
    before = scrape(chatd.url)
    response = httpx.post(chatd.url + "/v1/chat/completions", json={"model": "smart", "messages": HI}, timeout=10)
    after = scrape(chatd.url)

    assert response.status_code == 200 and response.headers["x-chatd-provider"] == "ollama_cloud"
    assert delta(before, after, "chatd_upstream_errors_total", provider="kimi", kind="upstream") == 2
    assert delta(before, after, "chatd_retries_total", provider="kimi") == 1
    assert delta(before, after, "chatd_fallbacks_total", from_provider="kimi", to_provider="ollama_cloud") == 1
    assert delta(before, after, "chatd_requests_total", provider="ollama_cloud", status="200") == 1


# ----- request ids


def test_a_client_request_id_goes_upstream_and_comes_back(gateway, upstreams):
    response = httpx.post(gateway.url + "/v1/chat/completions", timeout=10,
                          json={"model": "openrouter/moonshotai/kimi-k2", "messages": HI},
                          headers={"x-request-id": "trace-7f3a:1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-7f3a:1"
    assert upstreams["openrouter"].requests[-1].headers["x-request-id"] == "trace-7f3a:1"


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 129, "naïve"])
def test_a_missing_or_unusable_request_id_is_replaced_by_a_new_one(gateway, upstreams, sent):
    headers = {} if sent is None else {"x-request-id": sent.encode("utf-8")}
    ids = set()
    for _ in range(2):
        response = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "qwen3:8b", "messages": HI},
                              headers=headers, timeout=10)
        made = response.headers["x-request-id"]
        assert len(made) == 32 and int(made, 16) >= 0
        assert upstreams["ollama"].requests[-1].headers["x-request-id"] == made
        ids.add(made)
    assert len(ids) == 2


@pytest.mark.parametrize("path, body, status", [
    ("/v1/chat/completions", b"not json", 400),
    ("/v1/chat/nowhere", b"{}", 404),
    ("/v1/chat/completions", orjson.dumps({"model": "kimi/unknown-model-x", "messages": HI}), 502),
])
def test_error_answers_carry_the_request_id_too(gateway, upstreams, path, body, status):
    upstreams["kimi"].replies["unknown-model-x"] = Reply(status=500, error="boom")
    response = httpx.post(gateway.url + path, content=body, headers={"x-request-id": "req-err-1"}, timeout=10)
    assert response.status_code == status
    assert response.headers["x-request-id"] == "req-err-1"


# ----- access log


def test_one_json_access_line_per_request_with_where_it_went(gateway, caplog):
    caplog.set_level(logging.INFO, logger="chatd.access")
    sdk = OpenAI(base_url=gateway.url + "/v1/chat", api_key="unused", max_retries=0)
    stream = sdk.chat.completions.with_raw_response.create(model="smart", messages=HI, stream=True,
                                                           extra_headers={"x-request-id": "line-1"})
    text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    assert text == Reply().text
    httpx.get(gateway.url + "/v1/chat/health", timeout=10)
    assert wait_for(lambda: any(line["request_id"] == "line-1" for line in access_lines(caplog)))

    lines = [line for line in access_lines(caplog) if line["request_id"] == "line-1"]
    assert len(lines) == 1
    line = lines[0]
    assert line["model"] == "smart" and line["tier"] == "smart"
    assert (line["provider"], line["upstream_model"]) == ("kimi", "kimi-for-coding")
    assert line["status"] == 200 and line["attempts"] == 1 and line["stream"] is True
    assert 0 < line["ttft_ms"] <= line["latency_ms"]
    assert line["tokens_out"] == len(Reply().text.split()) and line["tokens_in"] > 0
    assert "body" not in line and "Hi" not in caplog.text  # no message text without log_bodies
    assert all(entry["path"] != "/v1/chat/health" for entry in access_lines(caplog))


def test_a_client_that_leaves_is_logged_as_499(gateway, upstreams, caplog):
    caplog.set_level(logging.INFO, logger="chatd.access")
    upstreams["ollama"].replies["qwen3:8b"] = Reply(hang=True)

    async def leave_early() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            task = asyncio.ensure_future(http.post(
                gateway.url + "/v1/chat/completions", headers={"x-request-id": "gone-1"},
                json={"model": "qwen3:8b", "messages": HI, "stream": True}))
            assert await asyncio.to_thread(upstreams["ollama"].wait_open_requests, 1, 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(leave_early())
    assert wait_for(lambda: any(line["request_id"] == "gone-1" for line in access_lines(caplog)))
    line = next(line for line in access_lines(caplog) if line["request_id"] == "gone-1")
    assert line["status"] == 499 and line["provider"] == "ollama" and line["ttft_ms"] is None


def test_an_upstream_error_is_logged_with_its_status_and_kind(gateway, upstreams, caplog):
    caplog.set_level(logging.INFO, logger="chatd.access")
    upstreams["openrouter"].replies["moonshotai/kimi-k2"] = Reply(status=429, error="slow down")
    response = httpx.post(gateway.url + "/v1/chat/completions", headers={"x-request-id": "limited-1"},
                          json={"model": "router", "messages": HI}, timeout=10)
    assert response.status_code == 429
    assert wait_for(lambda: any(line["request_id"] == "limited-1" for line in access_lines(caplog)))
    line = next(line for line in access_lines(caplog) if line["request_id"] == "limited-1")
    assert (line["status"], line["error"], line["provider"]) == (429, "rate_limited", "openrouter")


def test_log_bodies_adds_the_request_to_the_line(make_chatd, caplog):
    caplog.set_level(logging.INFO, logger="chatd.access")
    chatd = make_chatd(extra="log_bodies = true")
    httpx.post(chatd.url + "/v1/chat/completions", headers={"x-request-id": "bodies-1"},
               json={"model": "qwen3:8b", "messages": [{"role": "user", "content": "secret plan"}]}, timeout=10)
    assert wait_for(lambda: any(line["request_id"] == "bodies-1" for line in access_lines(caplog)))
    line = next(line for line in access_lines(caplog) if line["request_id"] == "bodies-1")
    assert line["body"]["messages"] == [{"role": "user", "content": "secret plan"}]


class Recorded:
    """A binary stream that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.writes.append(data)
        return len(data)

    def flush(self) -> None:
        pass


def test_standalone_access_lines_that_end_in_one_loop_turn_share_one_write():
    from chat_middleware.access import AccessLines

    stream = Recorded()
    lines = AccessLines()
    lines.to_stream(stream)

    async def requests_ending_together() -> list[bytes]:
        loop = asyncio.get_running_loop()
        for n in range(3):
            lines.write({"request_id": f"r{n}", "status": 200})
        assert stream.writes == []  # nothing written yet: the turn is not over
        turn_over = loop.create_future()
        loop.call_soon(turn_over.set_result, None)  # runs after the flush scheduled by the first line
        await turn_over
        return stream.writes

    writes = asyncio.run(requests_ending_together())
    assert len(writes) == 1
    assert [orjson.loads(line)["request_id"] for line in writes[0].splitlines()] == ["r0", "r1", "r2"]
    lines.write({"request_id": "outside-a-loop", "status": 200})  # no loop to flush later: written at once
    assert orjson.loads(stream.writes[-1])["request_id"] == "outside-a-loop"


class ClosedPipe(Recorded):
    def write(self, data: bytes) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_stdout_that_fails_loses_lines_without_breaking_requests_and_says_so_once(caplog):
    from chat_middleware.access import AccessLines

    lines = AccessLines()
    lines.to_stream(ClosedPipe())
    caplog.set_level(logging.ERROR, logger="chatd")
    for n in range(3):
        lines.write({"request_id": f"r{n}", "status": 200})  # outside a loop: each is written at once
    errors = [r.getMessage() for r in caplog.records if r.name == "chatd"]
    assert len(errors) == 1 and "access-log lines are being lost" in errors[0]


def test_latency_buckets_count_a_value_under_every_bound_at_or_above_it():
    from chat_middleware.metrics import BUCKETS, Timings

    timings = Timings()
    for seconds in (0.005, 0.0051, 2.0, 1000.0):
        timings.observe(seconds)
    cumulative = dict(timings.cumulative())
    assert cumulative["0.005"] == 1  # le: a value equal to the bound is in its bucket
    assert cumulative["0.01"] == 2 and cumulative["2.5"] == 3 and cumulative[str(BUCKETS[-1])] == 3
    assert cumulative["+Inf"] == 4 and timings.sum == 0.005 + 0.0051 + 2.0 + 1000.0

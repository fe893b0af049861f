"""Limits, cooldown and leases held across two chatd servers sharing one real redis-server ([chatd.state]).

Each `pair` is two standalone chatd apps, each under hypercorn on its own
event loop with its own RedisState, naming the same Redis and key prefix:
two processes of one deployment as far as the shared state can tell. What
only real processes show (workers, SIGKILL) is in test_shared_processes.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Callable, Iterator

import httpx
import pytest

from tests.conftest import KEYS, NO_RETRIES, gateway_toml
from tests.fakes import Reply
from tests.harness import ChatdServer, write_config
from tests.limits import HI, Held, chat, headers, limit_error, providers
from tests.redis_server import RedisServer, own_redis_server, redis_server  # noqa: F401  (fixtures)
from tests.test_observability import delta, scrape
from tests.test_state import warnings_logged  # noqa: F401  (fixture)

TEAM_A, TEAM_B, TEAM_C = "ka-shared-1111", "kb-shared-2222", "kc-shared-3333"
ENVIRON = {**KEYS, "TEAM_A_KEYS": TEAM_A, "TEAM_B_KEYS": TEAM_B, "TEAM_C_KEYS": TEAM_C}


def state_toml(url: str | None, prefix: str, state: str = "") -> str:
    """[chatd.state] naming `url` (None: no redis_url, every process for itself)."""
    named = f'redis_url = "{url}"\n' if url else ""
    return f'[chatd.state]\n{named}key_prefix = "{prefix}"\n{state}\n'


Pair = Callable[..., tuple[ChatdServer, ChatdServer]]


@pytest.fixture
def make_pair(upstreams, redis_server, tmp_path) -> Iterator[Pair]:
    """make_pair(blocks=…, clients=…, state=…, base=…, redis=…) → two chatd servers of one config."""
    servers: list[ChatdServer] = []

    def make(blocks: dict[str, str] | None = None, clients: str = "", state: str = "", base: str = NO_RETRIES,
             redis: RedisServer | None | bool = True) -> tuple[ChatdServer, ChatdServer]:
        url = redis_server.url if redis is True else redis.url if redis else None
        prefix = f"test:{uuid.uuid4().hex[:8]}:"
        kimi = (blocks or {}).get("kimi", "")
        toml = gateway_toml(**upstreams, extra=state_toml(url, prefix, state) + clients, base=base,
                            blocks={**(blocks or {}), "kimi": f"forward_headers = []\n{kimi}"})
        folder = tmp_path / f"pair-{len(servers)}"
        folder.mkdir()
        config = write_config(folder, toml, ENVIRON)
        pair = ChatdServer(config).start(), ChatdServer(config).start()
        servers.extend(pair)
        return pair

    yield make
    for server in servers:
        server.stop()


def eventually(check: Callable[[], object], timeout: float = 5.0) -> object:
    """The first truthy result of `check`, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {result!r} after {timeout}s")
        time.sleep(0.02)
    return result


# ----- limits hold for the two together


async def test_max_in_flight_holds_across_both_and_a_chain_skips_the_full_provider(make_pair, openrouter, kimi):
    a, b = make_pair(blocks={"openrouter": "max_in_flight = 2", "kimi": "max_in_flight = 1"})
    openrouter.replies["moonshotai/kimi-k2"] = Reply(hang=True)
    kimi.replies["kimi-for-coding"] = Reply(hang=True)
    async with Held() as held:
        held.post(a.url, "router")
        held.post(b.url, "router")
        held.post(a.url, "kimi/kimi-for-coding")
        assert await held.reach(openrouter, 2) and await held.reach(kimi, 1)
        for server in (a, b):
            response = await held.ask(server.url, "router")
            assert limit_error(response) == (429, "rate_limited", "provider_max_in_flight")
        smart = await held.ask(b.url, "smart")
        assert smart.status_code == 200 and smart.headers["x-chatd-provider"] == "ollama_cloud"
        assert smart.headers["x-chatd-attempts"] == "1"  # kimi, full in the other process, was not asked
        for server in (a, b):  # each sees the other's attempts in flight
            seen = providers(server.url)
            assert (seen["openrouter"]["in_flight"], seen["kimi"]["in_flight"]) == (2, 1)
        assert len(openrouter.requests) == 2
    assert await Held.reach(openrouter, 0)
    assert eventually(lambda: providers(b.url)["openrouter"]["in_flight"] == 0)
    openrouter.replies.clear()
    assert chat(b.url, "router").status_code == 200


def test_rpm_is_exact_across_both(make_pair, ollama):
    a, b = make_pair(blocks={"ollama_cloud": "rpm = 3"})
    assert [chat(server.url, "kimi-k2.6:cloud").status_code for server in (a, b, a)] == [200, 200, 200]
    for server in (b, a):
        refused = chat(server.url, "kimi-k2.6:cloud")
        assert limit_error(refused) == (429, "rate_limited", "provider_rpm")
        assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_tpm_is_exact_across_both(make_pair, openrouter):
    a, b = make_pair(blocks={"openrouter": "tpm = 30"})
    openrouter.replies["moonshotai/kimi-k2"] = Reply(prompt_tokens=15, completion_tokens=5)
    assert chat(a.url, "router").status_code == 200  # 20 tokens
    assert chat(b.url, "router", stream=True).status_code == 200  # 40, past the limit
    for server in (a, b):
        assert limit_error(chat(server.url, "router")) == (429, "rate_limited", "provider_tpm")
    assert len(openrouter.requests) == 2


def test_failures_in_one_process_cool_the_provider_for_the_other(make_pair, kimi, ollama_cloud):
    a, b = make_pair(base="retries = 0\ncooldown_failures = 2\ncooldown_s = 30")
    kimi.replies["kimi-for-coding"] = Reply(status=500, error="down")
    for server in (a, b):  # one failure each: two in a row for the provider
        assert chat(server.url, "smart").headers["x-chatd-provider"] == "ollama_cloud"
    assert len(kimi.requests) == 2
    skipped = chat(a.url, "smart")
    assert skipped.headers["x-chatd-provider"] == "ollama_cloud" and skipped.headers["x-chatd-attempts"] == "1"
    assert len(kimi.requests) == 2
    seen = providers(b.url)["kimi"]
    assert seen["available"] is False and 25 < seen["cooldown_s"] <= 30
    assert chat(b.url, "kimi/kimi-for-coding").status_code == 502  # the last entry of a chain is still asked


CLIENTS = """
[chatd.clients.team-a]
key_env = "TEAM_A_KEYS"
rpm = 2
[chatd.clients.team-b]
key_env = "TEAM_B_KEYS"
max_in_flight = 1
[chatd.clients.team-c]
key_env = "TEAM_C_KEYS"
"""


async def test_a_clients_limits_hold_across_both(make_pair, openrouter):
    a, b = make_pair(clients=CLIENTS)
    assert chat(a.url, "fast", TEAM_A).status_code == 200
    assert chat(b.url, "router", TEAM_A).status_code == 200
    assert limit_error(chat(a.url, "fast", TEAM_A)) == (429, "rate_limited", "client_rpm")
    openrouter.replies["moonshotai/kimi-k2"] = Reply(hang=True)
    async with Held() as held:
        response = await held.beside(openrouter, a.url, b.url, TEAM_B)
        assert limit_error(response) == (429, "rate_limited", "client_max_in_flight")
    assert await Held.reach(openrouter, 0)
    assert eventually(lambda: chat(b.url, "fast", TEAM_B).status_code == 200)


async def test_without_redis_url_each_process_counts_for_itself(make_pair, openrouter):
    a, b = make_pair(blocks={"openrouter": "max_in_flight = 1"}, redis=None)
    openrouter.replies["moonshotai/kimi-k2"] = Reply(hang=True)
    async with Held() as held:
        held.post(a.url, "router")
        held.post(b.url, "router")
        assert await held.reach(openrouter, 2)  # one each: the limit is per process
        response = await held.ask(a.url, "router")
        assert limit_error(response) == (429, "rate_limited", "provider_max_in_flight")
        assert providers(a.url)["openrouter"]["in_flight"] == 1


# ----- what a request costs in Redis


class Sent:
    """The commands clients send Redis — not those its scripts run — as MONITOR shows them.

        async with Sent(url) as sent:
            ...
            assert await sent.since() == ["EVALSHA", "EVALSHA"]   # everything sent since the last look
    """

    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis

        self.probe = Redis.from_url(url, decode_responses=True)
        self.sender = Redis.from_url(url)

    async def __aenter__(self) -> Sent:
        await self.sender.ping()  # its connection's own set-up, before the monitor starts
        self.monitor = await self.probe.monitor().__aenter__()
        self.events = self.monitor.listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.monitor.__aexit__(*exc)
        await self.probe.aclose()
        await self.sender.aclose()

    async def since(self, at_least: int = 0, timeout: float = 5.0) -> list[str]:
        """Every command sent since the last call, waiting until there are `at_least` of them (a release
        happens after the answer's last byte, so a client may see the answer first)."""
        async def read() -> list[str]:
            seen: list[str] = []
            while len(seen) < at_least:
                seen.append(await self._next())
            marker = uuid.uuid4().hex
            await self.sender.echo(marker)
            while (command := await self._next()) != f"ECHO {marker}":
                seen.append(command)
            return [command.split()[0] for command in seen]

        return await asyncio.wait_for(read(), timeout)

    async def _next(self) -> str:
        async for event in self.events:
            if event["client_type"] != "lua":
                name, _, rest = event["command"].partition(" ")
                return f"{name.upper()} {rest}"
        raise AssertionError("the monitor stopped")


async def test_an_attempt_makes_one_round_trip_before_going_upstream_and_one_after(
        make_pair, redis_server, openrouter, kimi):
    a, b = make_pair(clients=CLIENTS.replace("rpm = 2", "rpm = 100"), blocks={"openrouter": "max_in_flight = 9"},
                     state="lease_s = 60")  # leases renewed every 20 s: never while this test runs
    for server in (a, b):  # each process loads the scripts on its first use
        assert chat(server.url, "router", TEAM_A).status_code == 200
    async with Sent(redis_server.url) as sent, Held() as held:
        for server in (a, b, a):
            assert (await asyncio.to_thread(chat, server.url, "router", TEAM_C)).status_code == 200  # no limits
            assert (await asyncio.to_thread(chat, server.url, "router", TEAM_A, stream=True)).status_code == 200
        assert await sent.since(at_least=12) == ["EVALSHA"] * 12  # 6 requests, 2 round trips each

        openrouter.replies["moonshotai/kimi-k2"] = Reply(hang=True)
        held.post(b.url, "router", TEAM_A)
        assert await held.reach(openrouter, 1)
        assert await sent.since() == ["EVALSHA"]  # the upstream has the request: one round trip before
        await held.let_go()
        assert await sent.since(at_least=1) == ["EVALSHA"]  # and one after

        kimi.replies["kimi-for-coding"] = Reply(status=500, error="down")
        response = await asyncio.to_thread(chat, a.url, "smart", TEAM_A)
        assert response.headers["x-chatd-attempts"] == "2"
        assert await sent.since(at_least=4) == ["EVALSHA"] * 4  # per attempt: a fallback is one attempt more


# ----- Redis goes away


FAST_RETRY = "retry_s = 0.3\ntimeout_s = 0.2\n"


ONE_AT_A_TIME = {"openrouter": "max_in_flight = 1"}


async def shares(a: ChatdServer, b: ChatdServer, fake, held: Held) -> bool:
    """Whether a slot `a` takes is seen by `b` (ONE_AT_A_TIME; moonshotai/kimi-k2 hangs, the other answers)."""
    answered = (await held.beside(fake, a.url, b.url, model="openrouter/openai/gpt-4o-mini")).status_code
    await held.let_go()
    await held.reach(fake, 0)
    return answered == 429


async def until(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout}s"
        await asyncio.sleep(0.05)


async def test_open_mode_serves_while_redis_is_down_counts_in_process_and_shares_again(
        make_pair, own_redis_server, openrouter, warnings_logged):
    a, b = make_pair(blocks=ONE_AT_A_TIME, state=FAST_RETRY, redis=own_redis_server)
    openrouter.replies["moonshotai/kimi-k2"] = Reply(hang=True)
    async with Held() as held:
        assert await shares(a, b, openrouter, held)
        before = scrape(a.url)
        own_redis_server.stop()
        for server in (a, b, a, b):
            assert chat(server.url, "openrouter/openai/gpt-4o-mini").status_code == 200
        assert delta(before, scrape(a.url), "chatd_state_errors_total") >= 2  # both processes' failures
        failed = [r for r in warnings_logged if "failed" in r.getMessage()]
        assert len(failed) == 2 and all("counting in this process" in r.getMessage() for r in failed)  # once each
        assert not await shares(a, b, openrouter, held)  # each counts for itself meanwhile
        own_redis_server.start()
        await until(lambda: shares(a, b, openrouter, held))  # within seconds of Redis coming back
    assert any("reachable again" in r.getMessage() for r in warnings_logged)
    assert not any(key in r.getMessage() for r in warnings_logged for key in ENVIRON.values())


async def test_closed_mode_answers_503_state_unavailable_in_each_surfaces_shape(make_pair, own_redis_server):
    a, _ = make_pair(state=FAST_RETRY + 'on_error = "closed"\n', redis=own_redis_server)
    assert chat(a.url, "fast").status_code == 200
    own_redis_server.stop()
    response = chat(a.url, "fast")
    assert (response.status_code, response.json()["error"]["code"]) == (503, "state_unavailable")
    assert response.headers["x-should-retry"] == "true" and int(response.headers["retry-after"]) >= 1
    native = chat(a.url, "fast", path="/v1/chat")
    assert (native.status_code, native.json()["error"]["type"]) == (503, "server_error")
    ollama_api = chat(a.url, "fast", path="/v1/chat/api/chat", stream=False)
    assert ollama_api.status_code == 503 and "cannot be reached" in ollama_api.json()["error"]
    anthropic = httpx.post(a.url + "/v1/chat/v1/messages", timeout=10,
                           json={"model": "fast", "max_tokens": 16, "messages": HI, "stream": True})
    assert anthropic.status_code == 503 and anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "api_error" and anthropic.headers["x-should-retry"] == "true"
    responses = httpx.post(a.url + "/v1/chat/responses", json={"model": "fast", "input": "Hi"}, timeout=10)
    assert (responses.status_code, responses.json()["error"]["code"]) == (503, "state_unavailable")
    assert httpx.get(a.url + "/v1/chat/providers", timeout=10).status_code == 503
    assert httpx.get(a.url + "/v1/chat/health", timeout=10).status_code == 200
    own_redis_server.start()
    assert eventually(lambda: chat(a.url, "fast").status_code == 200)


@pytest.mark.parametrize("on_error, status", [("open", 200), ("closed", 503)])
def test_a_slow_redis_costs_a_request_its_own_short_timeout_only(make_pair, own_redis_server, on_error, status):
    import redis

    a, _ = make_pair(state=f'retry_s = 5\ntimeout_s = 0.2\non_error = "{on_error}"\n', redis=own_redis_server)
    assert chat(a.url, "fast").status_code == 200
    blocked = threading.Event()

    def stall() -> None:
        with redis.Redis.from_url(own_redis_server.url) as client:
            blocked.set()
            client.execute_command("DEBUG", "SLEEP", "1.5")

    def asleep() -> bool:
        """Whether Redis is inside the DEBUG SLEEP: a PING gets no answer within 50 ms."""
        with redis.Redis.from_url(own_redis_server.url, socket_timeout=0.05) as client:
            try:
                client.ping()
            except redis.TimeoutError:
                return True
        return False

    sleeper = threading.Thread(target=stall)
    sleeper.start()
    try:
        assert blocked.wait(5)
        eventually(asleep)
        started = time.monotonic()
        assert chat(a.url, "fast").status_code == status
        assert time.monotonic() - started < 1.0  # not the 1.5 s Redis is asleep
    finally:
        sleeper.join()


def test_a_reload_that_names_a_redis_starts_sharing_and_closes_the_old_state(tmp_path, ollama, redis_server):
    import redis

    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    path = tmp_path / "lakehouse.toml"
    base = f'[chatd]\nollama_url = "{ollama.url}"\nrpm = 100\n'
    path.write_text(base)
    with ChatdServer(path) as chatd, redis.Redis.from_url(redis_server.url) as probe:
        assert chat(chatd.url, "qwen3:8b").status_code == 200
        before = chatd.app.runtime.state
        path.write_text(base + state_toml(redis_server.url, prefix))
        assert chatd.call(chatd.app.reload) is True
        assert chat(chatd.url, "qwen3:8b").status_code == 200
        assert probe.zcard(prefix + "provider:ollama:rpm") == 1  # counted in Redis from now on
        assert chatd.app.runtime.state is not before
        path.write_text(base + state_toml(redis_server.url, prefix) + "lease_s = 20\n")
        kept = chatd.app.runtime.state
        connected = probe.info("clients")["connected_clients"]  # this probe, the chatd's state (and others')
        assert chatd.call(chatd.app.reload) is True
        assert chatd.app.runtime.state is not kept  # [chatd.state] changed: a state of its own
        assert eventually(lambda: probe.info("clients")["connected_clients"] == connected - 1)  # the old closed
        path.write_text(base + state_toml(redis_server.url, prefix) + "lease_s = 20\n[models]\nx = 'qwen3:4b'\n")
        kept = chatd.app.runtime.state
        assert chatd.call(chatd.app.reload) is True
        assert chatd.app.runtime.state is kept  # only [models] changed: the same state, the same counts
        assert chat(chatd.url, "qwen3:8b").status_code == 200
        assert probe.zcard(prefix + "provider:ollama:rpm") == 2

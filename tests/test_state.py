"""The shared state: limits, leases and cooldowns across two chatd processes sharing one real redis-server.

Two RedisState instances on one server stand for two processes; the same
scenarios run against LocalState (one process: both "processes" are the same
object) so the two implementations keep one semantics. The Redis-only tests
cover what only a server shows: key layout and expiry, round trips, a process
killed with SIGKILL, Redis going away, coming back, or going slow.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import uuid
from time import monotonic
from typing import Awaitable, Callable, Iterator, TypeVar

import pytest

from chat_middleware.errors import ConfigError
from chat_middleware.state import (
    BUSY_RETRY_S, UNLIMITED, Cooldown, Lease, Limits, LocalState, Refusal, State, StateUnavailable,
)
from chat_middleware.state_redis import RedisState
from tests.harness import ROOT
from tests.redis_server import own_redis_server, redis_server  # noqa: F401  (fixtures)

T = TypeVar("T")
SLACK = 0.15
"""Seconds of scheduling noise a timing assertion allows."""


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 5.0) -> T:
    """The first truthy result of `check`, polled until `timeout` seconds have passed."""
    deadline = monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if monotonic() > deadline:
            raise AssertionError(f"still {result!r} after {timeout}s")
        await asyncio.sleep(0.02)


async def until_admitted(admit: Callable[[], Awaitable[Lease | Refusal]], timeout: float = 5.0) -> Lease:
    """The first lease `admit` grants, asked again until `timeout` seconds have passed."""

    async def lease() -> Lease | None:
        grant = await admit()
        return grant if isinstance(grant, Lease) else None

    return await eventually(lease, timeout)


def new_prefix() -> str:
    return f"test:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def shared(redis_server):
    """make(**options) → a RedisState (of its own key prefix unless told) on the session's server."""
    made = []

    def make(prefix: str | None = None, url: str | None = None, **options):
        state = RedisState(url or redis_server.url, key_prefix=prefix or new_prefix(), **options)
        made.append(state)
        return state

    yield make
    for state in made:
        await state.aclose()


@pytest.fixture(params=["local", "redis"])
def make_states(request) -> Callable[..., tuple[State, State]]:
    """make(**options) → two states that stand for two processes of one deployment."""
    if request.param == "local":
        def one_process(window_s: float = 60.0) -> tuple[State, State]:
            state = LocalState(window_s=window_s)
            return state, state

        return one_process
    shared = request.getfixturevalue("shared")

    def two_processes(**options) -> tuple[State, State]:
        prefix = new_prefix()
        return shared(prefix=prefix, **options), shared(prefix=prefix, **options)

    return two_processes


@pytest.fixture
def warnings_logged() -> Iterator[list[logging.LogRecord]]:
    """Warnings of the `chatd` logger (which may not propagate to the root once chatd configured it)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("chatd")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def refused(grant: Lease | Refusal, code: str) -> Refusal:
    assert isinstance(grant, Refusal), grant
    assert grant.code == code, grant
    return grant


async def attempt(state: State, provider: str, outcome: str, cooldown: Cooldown) -> None:
    lease = await state.admit(provider, UNLIMITED, cooldown=cooldown)
    assert isinstance(lease, Lease)
    await state.release(lease, outcome=outcome)


async def test_max_in_flight_holds_for_both_processes_together(make_states):
    a, b = make_states()
    four = Limits(max_in_flight=4)
    leases = [(state, await state.admit("kimi", four)) for state in (a, b, a, b)]
    assert all(isinstance(lease, Lease) for _, lease in leases)
    for state in (a, b):
        refusal = refused(await state.admit("kimi", four), "provider_max_in_flight")
        assert (refusal.scope, refusal.name, refusal.retry_after) == ("provider", "kimi", BUSY_RETRY_S)
        assert refusal.retry_after_header == "1"
    assert (await b.snapshot(["kimi", "groq"])) == {"kimi": (4, 0.0), "groq": (0, 0.0)}
    state, lease = leases[1]
    await state.release(lease, outcome="success")
    assert isinstance(await a.admit("kimi", four), Lease)
    refused(await b.admit("kimi", four), "provider_max_in_flight")


async def test_client_limits_count_across_providers_and_apart_from_them(make_states):
    a, b = make_states()
    two = Limits(max_in_flight=2)
    assert isinstance(await a.admit("kimi", UNLIMITED, client="team-a", client_limits=two), Lease)
    assert isinstance(await b.admit("ollama", UNLIMITED, client="team-a", client_limits=two), Lease)
    refusal = refused(await a.admit("groq", UNLIMITED, client="team-a", client_limits=two), "client_max_in_flight")
    assert (refusal.scope, refusal.name) == ("client", "team-a")
    assert (await a.snapshot(["groq"]))["groq"][0] == 0  # a refused admit takes no provider slot
    assert isinstance(await b.admit("groq", UNLIMITED, client="team-b", client_limits=two), Lease)

    # the provider's limit refuses a client that has room, and takes none of the client's room
    one = Limits(max_in_flight=1)
    assert isinstance(await a.admit("opencode", one), Lease)
    budget = Limits(max_in_flight=1, rpm=1)
    for _ in range(3):
        refused(await b.admit("opencode", one, client="team-c", client_limits=budget), "provider_max_in_flight")
    assert isinstance(await b.admit("kimi", UNLIMITED, client="team-c", client_limits=budget), Lease)
    refused(await a.admit("groq", UNLIMITED, client="team-c", client_limits=budget), "client_max_in_flight")
    # both full: the client's limit is named, as no other provider would help
    refused(await a.admit("opencode", one, client="team-a", client_limits=two), "client_max_in_flight")


async def test_rpm_is_exact_over_a_sliding_window(make_states):
    a, b = make_states(window_s=1.0)
    five = Limits(rpm=5)

    async def requests(*states: State) -> None:
        for state in states:
            lease = await state.admit("kimi", five)
            assert isinstance(lease, Lease)
            await state.release(lease, outcome="success")  # rpm counts requests, not the ones in flight

    started = monotonic()
    await requests(a, b, a)
    await asyncio.sleep(0.4)  # two more requests measurably later than the first three
    later = monotonic()
    await requests(b, a)
    refusal = refused(await b.admit("kimi", five), "provider_rpm")
    assert 1.0 - (monotonic() - started) - SLACK <= refusal.retry_after <= 1.0 - 0.4 + SLACK
    refused(await a.admit("kimi", five), "provider_rpm")
    await until_admitted(lambda: a.admit("kimi", five))
    assert monotonic() - started >= 1.0 - SLACK  # not before the oldest request aged out
    for state in (b, a):  # the rest of the first three age out (within milliseconds of the first)…
        await state.release(await until_admitted(lambda: state.admit("kimi", five)), outcome="success")
    # …and the two later ones still count
    refusal = refused(await b.admit("kimi", five), "provider_rpm")
    assert abs(refusal.retry_after - (1.0 - (monotonic() - later))) <= SLACK


async def test_client_rpm_counts_its_requests_to_every_provider(make_states):
    a, b = make_states()
    two = Limits(rpm=2)
    for state, provider in ((a, "kimi"), (b, "groq")):
        lease = await state.admit(provider, UNLIMITED, client="team-a", client_limits=two)
        await state.release(lease, outcome="success")
    refusal = refused(await a.admit("ollama", UNLIMITED, client="team-a", client_limits=two), "client_rpm")
    assert 59 < refusal.retry_after <= 60
    assert isinstance(await b.admit("ollama", UNLIMITED, client="team-b", client_limits=two), Lease)


async def test_tpm_admits_until_the_recorded_tokens_reach_it(make_states):
    a, b = make_states(window_s=1.0)
    hundred = Limits(tpm=100)
    started = monotonic()
    for state, tokens in ((a, 40), (b, 30), (a, 29)):
        lease = await state.admit("kimi", hundred)
        await state.release(lease, tokens=tokens, outcome="success")
    last = await b.admit("kimi", hundred)  # 99 recorded: room for one more
    assert isinstance(last, Lease)
    await b.release(last, tokens=1, outcome="success")
    refusal = refused(await a.admit("kimi", hundred), "provider_tpm")
    assert 1.0 - (monotonic() - started) - SLACK <= refusal.retry_after <= 1.0  # when the first 40 age out
    await until_admitted(lambda: b.admit("kimi", hundred))
    assert monotonic() - started >= 1.0 - SLACK


async def test_tpm_retry_after_waits_for_enough_tokens_to_age_out(make_states):
    a, b = make_states(window_s=2.0)
    fifteen = Limits(tpm=15)
    lease = await a.admit("kimi", fifteen, client="team-a", client_limits=Limits(tpm=1000))
    await a.release(lease, tokens=20, outcome="success")
    await asyncio.sleep(0.4)  # a second entry recorded measurably later than the first
    second_at = monotonic()
    lease = await b.admit("groq", UNLIMITED, client="team-a", client_limits=Limits(tpm=30))
    await b.release(lease, tokens=20, outcome="success")
    # kimi: 20 ≥ 15 until its only entry ages out
    assert refused(await b.admit("kimi", fifteen), "provider_tpm").retry_after <= 2.0 - 0.4 + SLACK
    # team-a: 40 ≥ 15; the first 20 ageing out leaves 20, still ≥ 15: only the second's age-out frees it
    refusal = refused(await a.admit("ollama", UNLIMITED, client="team-a", client_limits=fifteen), "client_tpm")
    assert 2.0 - (monotonic() - second_at) - SLACK <= refusal.retry_after <= 2.0


async def test_failures_reported_by_one_process_cool_the_provider_for_the_other(make_states):
    a, b = make_states()
    three = Cooldown(failures=3, seconds=30)
    await attempt(a, "kimi", "failure", three)
    await attempt(b, "kimi", "failure", three)
    await attempt(a, "kimi", "success", three)  # a success ends the run of failures
    await attempt(b, "kimi", "failure", three)
    await attempt(a, "kimi", "neutral", three)  # a refused request is not the provider's fault
    await attempt(a, "kimi", "failure", three)
    assert isinstance(await b.admit("kimi", UNLIMITED, skip_cooling=True), Lease)  # two in a row so far
    await attempt(b, "kimi", "failure", three)
    refusal = refused(await a.admit("kimi", UNLIMITED, skip_cooling=True), "provider_cooldown")
    assert 30 - SLACK <= refusal.retry_after <= 30
    assert isinstance(await a.admit("kimi", UNLIMITED), Lease)  # the last entry of a chain is still tried
    in_flight, cooling = (await b.snapshot(["kimi"]))["kimi"]
    assert in_flight == 2 and 30 - SLACK <= cooling <= 30
    assert isinstance(await b.admit("groq", UNLIMITED, skip_cooling=True), Lease)


async def test_a_cooldown_ends_and_the_count_starts_again(make_states):
    a, b = make_states()
    short = Cooldown(failures=2, seconds=0.3)
    for state in (a, b):
        await attempt(state, "kimi", "failure", short)
    refused(await b.admit("kimi", UNLIMITED, skip_cooling=True), "provider_cooldown")
    await until_admitted(lambda: a.admit("kimi", UNLIMITED, skip_cooling=True))
    assert (await b.snapshot(["kimi"]))["kimi"][1] == 0.0
    await attempt(b, "kimi", "failure", short)  # the count was reset when the cooldown began
    assert isinstance(await a.admit("kimi", UNLIMITED, skip_cooling=True), Lease)


async def test_no_cooldown_when_it_is_switched_off(make_states):
    a, b = make_states()
    for policy in (Cooldown(failures=0, seconds=30), Cooldown(failures=1, seconds=0)):
        for _ in range(3):
            await attempt(a, "kimi", "failure", policy)
        assert isinstance(await b.admit("kimi", UNLIMITED, skip_cooling=True), Lease)


async def test_a_lease_is_released_once(make_states):
    a, b = make_states()
    limits = Limits(max_in_flight=2, tpm=100)
    twice = Cooldown(failures=2, seconds=30)
    first = await a.admit("kimi", limits, cooldown=twice)
    second = await b.admit("kimi", limits, cooldown=twice)
    assert isinstance(first, Lease) and isinstance(second, Lease)
    for _ in range(2):
        await a.release(first, tokens=60, outcome="failure")
    assert (await b.snapshot(["kimi"]))["kimi"] == (1, 0.0)  # one slot freed, one failure counted
    assert isinstance(await a.admit("kimi", limits, skip_cooling=True), Lease)  # 60 tokens counted, not 120
    with pytest.raises(ValueError, match="outcome"):
        await b.release(second, outcome="ok")


def test_limits_are_checked_when_made():
    with pytest.raises(ValueError, match="rpm"):
        Limits(rpm=-1)
    with pytest.raises(ValueError, match="cooldown"):
        Cooldown(failures=-1)


# Redis only: what a server shows.


@pytest.fixture
async def probe(redis_server):
    """A plain client of the session's server, to look at what the states left there."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def test_every_key_has_the_prefix_and_an_expiry(shared, probe):
    prefix = new_prefix()
    state = shared(prefix=prefix, lease_s=20, window_s=50, failure_ttl_s=40)
    limits = Limits(max_in_flight=5, rpm=5, tpm=500)
    kept = await state.admit("kimi", limits, client="team-a", client_limits=limits)
    done = await state.admit("kimi", limits, client="team-a", client_limits=limits, cooldown=Cooldown(3, 30))
    await state.release(done, tokens=12, outcome="failure")
    await attempt(state, "groq", "failure", Cooldown(failures=1, seconds=25))
    assert isinstance(kept, Lease)
    assert all(key.startswith("test:") for key in await probe.keys("*"))  # every test's prefix
    ttl = {key.removeprefix(prefix): await probe.pttl(key) for key in await probe.keys(prefix + "*")}
    assert set(ttl) == {
        "provider:kimi:in_flight", "provider:kimi:rpm", "provider:kimi:tpm", "provider:kimi:tpm_sum",
        "provider:kimi:failures", "provider:groq:cooldown",
        "client:team-a:in_flight", "client:team-a:rpm", "client:team-a:tpm", "client:team-a:tpm_sum",
    }
    bounds = {"in_flight": 20_000, "rpm": 50_000, "tpm": 50_000, "tpm_sum": 50_000, "failures": 40_000,
              "cooldown": 25_000}
    for key, left in ttl.items():
        assert 0 < left <= bounds[key.rsplit(":", 1)[1]], (key, left)
    assert await probe.get(prefix + "provider:kimi:tpm_sum") == "12"


async def test_admit_and_release_are_one_round_trip_each(shared, probe, redis_server):
    from redis.asyncio import Redis

    state = shared()
    limits = Limits(max_in_flight=5, rpm=5, tpm=500)
    lease = await state.admit("kimi", limits, client="team-a", client_limits=limits)  # loads the script
    await state.release(lease, tokens=10, outcome="failure")  # and this one
    marker = uuid.uuid4().hex
    seen = []
    sender = Redis.from_url(redis_server.url)
    await sender.ping()  # its connection's handshake (HELLO) before the monitor starts
    try:
        async with probe.monitor() as monitor:
            lease = await state.admit("kimi", limits, client="team-a", client_limits=limits)
            await state.release(lease, tokens=10, outcome="success")
            await sender.echo(marker)
            async for command in monitor.listen():
                if marker in command["command"]:
                    break
                if command["client_type"] != "lua":  # not the commands a script ran
                    seen.append(command["command"].split()[0].upper())
    finally:
        await sender.aclose()
    assert seen == ["EVALSHA", "EVALSHA"]


async def test_a_script_redis_forgot_is_loaded_again(shared, probe):
    state = shared()
    assert isinstance(await state.admit("kimi", Limits(max_in_flight=1)), Lease)
    await probe.script_flush()
    refused(await state.admit("kimi", Limits(max_in_flight=1)), "provider_max_in_flight")
    assert state.errors == 0


CHILD = """
import asyncio, sys
from chat_middleware.state import Lease, Limits
from chat_middleware.state_redis import RedisState

async def main():
    state = RedisState(sys.argv[1], key_prefix=sys.argv[2], lease_s=float(sys.argv[3]))
    for _ in range(2):
        assert isinstance(await state.admit("kimi", Limits(max_in_flight=2)), Lease)
    print("admitted", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_the_slots_of_a_killed_process_free_within_lease_s(shared, probe, redis_server):
    prefix = new_prefix()
    lease_s = 1.0
    two = Limits(max_in_flight=2)
    state = shared(prefix=prefix, lease_s=lease_s)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, redis_server.url, prefix, str(lease_s), cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    try:
        assert await asyncio.wait_for(child.stdout.readline(), 10) == b"admitted\n"
        refused(await state.admit("kimi", two), "provider_max_in_flight")
        # while the child lives it renews its leases: past their first expiry they still hold
        first_expiry = max(score for _, score in await probe.zrange(f"{prefix}provider:kimi:in_flight", 0, -1,
                                                                     withscores=True))

        async def past_first_expiry() -> bool:
            seconds, micros = await probe.time()
            return seconds * 1000 + micros // 1000 > first_expiry + 100

        await eventually(past_first_expiry)
        refused(await state.admit("kimi", two), "provider_max_in_flight")
        assert (await state.snapshot(["kimi"]))["kimi"][0] == 2
        child.send_signal(signal.SIGKILL)
        await child.wait()
        killed_at = monotonic()
        await until_admitted(lambda: state.admit("kimi", two))
        assert monotonic() - killed_at <= lease_s + SLACK
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def test_open_mode_counts_in_process_while_redis_is_down_and_shares_again(
    own_redis_server, shared, warnings_logged,
):
    failed_calls = []
    url = own_redis_server.url
    a = shared(url=url, prefix="test:outage:", retry_s=0.2, on_state_error=lambda: failed_calls.append(1))
    b = shared(url=url, prefix="test:outage:", retry_s=0.2)
    one = Limits(max_in_flight=1)
    lease = await a.admit("kimi", one)
    assert isinstance(lease, Lease) and lease.shared
    own_redis_server.stop()
    await a.release(lease, tokens=5, outcome="success")  # its slot would expire with the lease
    here = await a.admit("kimi", one)
    assert isinstance(here, Lease) and not here.shared
    for _ in range(20):  # still one slot: counted in this process now
        refused(await a.admit("kimi", one), "provider_max_in_flight")
    assert (await a.snapshot(["kimi"]))["kimi"][0] == 1
    assert a.errors == len(failed_calls) == 1  # one failed call; the rest did not wait on Redis
    assert len(warnings_logged) == 1 and "counting in this process" in warnings_logged[0].getMessage()
    await a.release(here, outcome="success")
    assert (a.local.snapshot_now(["kimi"]))["kimi"][0] == 0  # released where it was taken

    own_redis_server.start()

    async def shared_lease() -> Lease | None:
        grant = await a.admit("kimi", one)
        if isinstance(grant, Lease) and not grant.shared:
            await a.release(grant, outcome="neutral")
            return None
        return grant

    again = await eventually(shared_lease, timeout=5)
    assert isinstance(again, Lease)
    refused(await b.admit("kimi", one), "provider_max_in_flight")  # the other process sees it
    assert "reachable again" in warnings_logged[-1].getMessage()
    assert all("redis://" not in record.getMessage() for record in warnings_logged)


async def test_closed_mode_answers_503_while_redis_is_down(own_redis_server, shared):
    state = shared(url=own_redis_server.url, on_error="closed", retry_s=0.2)
    lease = await state.admit("kimi", UNLIMITED)
    assert isinstance(lease, Lease)
    own_redis_server.stop()
    with pytest.raises(StateUnavailable) as caught:
        await state.admit("kimi", UNLIMITED)
    assert (caught.value.status, caught.value.code) == (503, "state_unavailable")
    assert dict(caught.value.headers()) == {b"x-should-retry": b"true", b"retry-after": b"1"}  # retry_s = 0.2
    assert own_redis_server.url not in caught.value.message and "127.0.0.1" in caught.value.message
    await state.release(lease, outcome="success")  # a release never raises: the slot expires with its lease
    with pytest.raises(StateUnavailable):
        await state.snapshot(["kimi"])
    own_redis_server.start()

    async def admitted() -> Lease | Refusal | None:
        try:
            return await state.admit("kimi", UNLIMITED)
        except StateUnavailable:
            return None

    assert isinstance(await eventually(admitted), Lease)


def _blocked(port: int) -> bool:
    """Whether the server at port leaves a PING unanswered for 50 ms."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(0.05)
        sock.sendall(b"PING\r\n")
        try:
            return not sock.recv(16)
        except TimeoutError:
            return True


@pytest.mark.parametrize("on_error", ["open", "closed"])
async def test_a_slow_redis_is_cut_by_the_call_timeout(own_redis_server, shared, on_error):
    state = shared(url=own_redis_server.url, on_error=on_error, timeout_s=0.25)
    assert isinstance(await state.admit("kimi", UNLIMITED), Lease)  # connected, script loaded
    with socket.create_connection(("127.0.0.1", own_redis_server.port)) as sleeper:
        sleeper.sendall(b"DEBUG SLEEP 2\r\n")
        assert await eventually(lambda: asyncio.to_thread(_blocked, own_redis_server.port))
        started = monotonic()
        if on_error == "open":
            lease = await state.admit("kimi", UNLIMITED)
            assert isinstance(lease, Lease) and not lease.shared
        else:
            with pytest.raises(StateUnavailable):
                await state.admit("kimi", UNLIMITED)
        assert monotonic() - started < 0.25 + SLACK
        assert state.errors == 1


async def test_a_server_that_never_answers_is_cut_by_the_call_timeout(shared):
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        state = shared(url=f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout_s=0.2)
        for _ in range(2):
            started = monotonic()
            lease = await state.admit("kimi", Limits(max_in_flight=1))
            assert isinstance(lease, Lease) and not lease.shared
            assert monotonic() - started < 0.2 + SLACK
            await state.release(lease, outcome="success")
        assert state.errors == 1  # the second admit did not wait on it again


def test_without_the_redis_package_the_error_says_what_to_install(monkeypatch):
    for name in ("redis", "redis.asyncio", "redis.asyncio.retry", "redis.backoff", "redis.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=r"chatd\[redis\]"):
        RedisState("redis://127.0.0.1:1/0")

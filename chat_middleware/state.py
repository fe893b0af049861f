"""Limits that hold across every process: in-flight slots, request and token windows, cooldowns.

Before an upstream attempt the relay asks `admit`; only if every limit of the
provider and of the client has room does it get a `Lease`, which it hands
back to `release` with the tokens the upstream reported and how the attempt
ended. A refusal is a `Refusal` naming the limit and when to retry.

    state = LocalState()                        # or RedisState("redis://host:6379/0")
    grant = await state.admit("kimi", Limits(max_in_flight=4, rpm=60),
                              client="team-a", client_limits=Limits(rpm=600),
                              skip_cooling=not last_in_chain, cooldown=Cooldown(5, 30))
    if isinstance(grant, Refusal):
        ...                                     # 429 grant.code, Retry-After grant.retry_after
    try:
        ...                                     # the upstream attempt
    finally:
        await state.release(grant, tokens=tokens_in + tokens_out, outcome="success")

`LocalState` counts in this process; `RedisState` (state_redis.py) in Redis,
shared by every chatd that names it, with the same semantics:

- max_in_flight: admitted and not yet released, per provider and per client.
- rpm: requests admitted within the last `window_s` (60 s), a sliding log.
- tpm: tokens released within the last `window_s`; refused once the sum has
  reached the limit (the attempts in flight then may overshoot it: their
  tokens are only known when they end).
- cooldown: `Cooldown.failures` provider faults in a row (forgotten
  `failure_ttl_s` after the last one) start a cooldown of `Cooldown.seconds`
  and reset the count; a success resets it. `skip_cooling=True` refuses a
  cooling provider — a fallback chain passes it for every entry but its last.

Checks run cooldown first, then the client's limits, then the provider's, and
nothing is taken unless all pass. A client refusal holds for any provider;
a provider refusal is worth the next entry of a chain. Retry-After is exact
for rpm and tpm (when enough of the window ages out) and an estimate for
in-flight slots (`BUSY_RETRY_S`: nobody knows when an answer ends).
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass
from itertools import count
from time import monotonic
from typing import Iterator, Literal, Protocol

from .errors import RequestError

Outcome = Literal["success", "failure", "neutral"]
OUTCOMES = frozenset({"success", "failure", "neutral"})
WINDOW_S = 60.0
BUSY_RETRY_S = 1.0
"""Retry-After of a full in-flight limit: a guess, as slots free when answers end."""
FAILURE_TTL_S = 600.0


class StateUnavailable(RequestError):
    """503: the shared state cannot be reached and [chatd.state] on_error = "closed"."""

    status = 503
    type = "server_error"
    code = "state_unavailable"
    kind = "state"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds until the shared state is tried again."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-should-retry", b"true"), (b"retry-after", str(max(1, math.ceil(self.retry_after))).encode())]


@dataclass(frozen=True)
class Limits:
    """What one provider or client may have at once and per minute; 0 = unlimited.

    Limits(max_in_flight=4, rpm=60, tpm=200_000)
    """

    max_in_flight: int = 0
    rpm: int = 0
    tpm: int = 0

    def __post_init__(self) -> None:
        for name in ("max_in_flight", "rpm", "tpm"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number ≥ 0, not {value!r}")


UNLIMITED = Limits()


@dataclass(frozen=True)
class Cooldown:
    """`failures` provider faults in a row put it out for `seconds`; either 0 = never.

    Cooldown(failures=5, seconds=30)
    """

    failures: int = 5
    seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.failures < 0 or self.seconds < 0:
            raise ValueError(f"cooldown needs failures ≥ 0 and seconds ≥ 0, not {self}")

    @property
    def enabled(self) -> bool:
        return self.failures > 0 and self.seconds > 0


@dataclass(frozen=True)
class Refusal:
    """A limit that had no room: 429 with `code` and Retry-After `retry_after` seconds."""

    scope: Literal["provider", "client"]
    name: str
    limit: Literal["max_in_flight", "rpm", "tpm", "cooldown"]
    retry_after: float

    @property
    def code(self) -> str:
        """The error code clients see: provider_rpm, client_max_in_flight, provider_cooldown…"""
        return f"{self.scope}_{self.limit}"

    @property
    def retry_after_header(self) -> str:
        """Retry-After as HTTP wants it: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


@dataclass(eq=False, slots=True)
class Lease:
    """The slots one admitted attempt holds until it is released (once: again is a no-op)."""

    id: str
    provider: str
    client: str | None
    cooldown: Cooldown
    provider_tpm: bool
    """Whether the provider has a tpm limit, so the attempt's tokens are counted."""
    client_tpm: bool
    shared: bool = False
    """Taken in Redis (else in this process)."""
    released: bool = False

    @classmethod
    def granted(
        cls, lease_id: str, provider: str, provider_limits: Limits, client: str | None,
        client_limits: Limits | None, cooldown: Cooldown, shared: bool = False,
    ) -> Lease:
        client_tpm = client is not None and client_limits is not None and client_limits.tpm > 0
        return cls(lease_id, provider, client, cooldown, provider_limits.tpm > 0, client_tpm, shared)


class State(Protocol):
    """The shared-state interface both implementations offer."""

    async def admit(
        self, provider: str, provider_limits: Limits, *, client: str | None = None,
        client_limits: Limits | None = None, skip_cooling: bool = False, cooldown: Cooldown = Cooldown(),
    ) -> Lease | Refusal: ...

    async def release(self, lease: Lease, *, tokens: int = 0, outcome: Outcome) -> None: ...

    async def snapshot(self, providers: list[str]) -> dict[str, tuple[int, float]]: ...

    async def aclose(self) -> None: ...


def check_outcome(outcome: str) -> None:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")


def lease_ids() -> Iterator[str]:
    """Ids unique across processes: a random prefix per instance, then a counter."""
    prefix = os.urandom(5).hex()
    return map(f"{prefix}.{{:x}}".format, count())


class _Counters:
    """One provider's or client's slots and windows, in this process."""

    __slots__ = ("leases", "requests", "tokens", "token_sum", "failures", "failed_at", "cooling_until")

    def __init__(self) -> None:
        self.leases: set[str] = set()
        self.requests: deque[float] = deque()
        self.tokens: deque[tuple[float, int]] = deque()
        self.token_sum = 0
        self.failures = 0
        self.failed_at = 0.0
        self.cooling_until = 0.0

    def refusal(self, limits: Limits, now: float, window: float) -> tuple[str, float] | None:
        """The first limit without room and its retry-after, or None."""
        if limits.max_in_flight and len(self.leases) >= limits.max_in_flight:
            return "max_in_flight", BUSY_RETRY_S
        if limits.rpm:
            requests = self.requests
            while requests and requests[0] <= now - window:
                requests.popleft()
            if len(requests) >= limits.rpm:
                return "rpm", requests[len(requests) - limits.rpm] + window - now
        if limits.tpm:
            tokens = self.tokens
            while tokens and tokens[0][0] <= now - window:
                self.token_sum -= tokens.popleft()[1]
            if self.token_sum >= limits.tpm:
                left = self.token_sum
                for at, n in tokens:
                    left -= n
                    if left < limits.tpm:
                        return "tpm", at + window - now
        return None


class LocalState:
    """Everything counted in this process, as chatd does without [chatd.state] redis_url."""

    def __init__(self, *, window_s: float = WINDOW_S, failure_ttl_s: float = FAILURE_TTL_S) -> None:
        self._window = window_s
        self._failure_ttl = failure_ttl_s
        self._names: dict[tuple[str, str], _Counters] = {}
        self._ids = lease_ids()

    def _of(self, scope: str, name: str) -> _Counters:
        counters = self._names.get((scope, name))
        if counters is None:
            counters = self._names[scope, name] = _Counters()
        return counters

    async def admit(
        self, provider: str, provider_limits: Limits, *, client: str | None = None,
        client_limits: Limits | None = None, skip_cooling: bool = False, cooldown: Cooldown = Cooldown(),
    ) -> Lease | Refusal:
        return self.admit_now(provider, provider_limits, client, client_limits, skip_cooling, cooldown)

    def admit_now(
        self, provider: str, provider_limits: Limits, client: str | None, client_limits: Limits | None,
        skip_cooling: bool, cooldown: Cooldown,
    ) -> Lease | Refusal:
        """`admit` without the coroutine, for RedisState to fall back on."""
        now = monotonic()
        own = self._of("provider", provider)
        if skip_cooling and own.cooling_until > now:
            return Refusal("provider", provider, "cooldown", own.cooling_until - now)
        checks = [("provider", provider, own, provider_limits)]
        if client is not None:
            checks.insert(0, ("client", client, self._of("client", client), client_limits or UNLIMITED))
        for scope, name, counters, limits in checks:
            refused = counters.refusal(limits, now, self._window)
            if refused is not None:
                return Refusal(scope, name, *refused)  # type: ignore[arg-type]
        lease = Lease.granted(next(self._ids), provider, provider_limits, client, client_limits, cooldown)
        for _, _, counters, limits in checks:
            counters.leases.add(lease.id)
            if limits.rpm:
                counters.requests.append(now)
        return lease

    async def release(self, lease: Lease, *, tokens: int = 0, outcome: Outcome) -> None:
        check_outcome(outcome)
        if not lease.released:
            lease.released = True
            self.settle(lease, tokens, outcome)

    def settle(self, lease: Lease, tokens: int, outcome: str) -> None:
        """Free the lease's slots (if it holds any here), count its tokens, apply its outcome."""
        now = monotonic()
        own = self._of("provider", lease.provider)
        counted = [(own, lease.provider_tpm)]
        if lease.client is not None:
            counted.append((self._of("client", lease.client), lease.client_tpm))
        for counters, tpm in counted:
            counters.leases.discard(lease.id)
            if tokens > 0 and tpm:
                counters.tokens.append((now, tokens))
                counters.token_sum += tokens
        if outcome == "success":
            own.failures = 0
        elif outcome == "failure" and lease.cooldown.enabled:
            if now - own.failed_at >= self._failure_ttl:
                own.failures = 0
            own.failures += 1
            own.failed_at = now
            if own.failures >= lease.cooldown.failures:
                own.cooling_until = now + lease.cooldown.seconds
                own.failures = 0

    async def snapshot(self, providers: list[str]) -> dict[str, tuple[int, float]]:
        return self.snapshot_now(providers)

    def snapshot_now(self, providers: list[str]) -> dict[str, tuple[int, float]]:
        now = monotonic()
        view = {}
        for name in providers:
            counters = self._names.get(("provider", name))
            if counters is None:
                view[name] = (0, 0.0)
            else:
                view[name] = (len(counters.leases), max(0.0, counters.cooling_until - now))
        return view

    async def aclose(self) -> None:
        self._names.clear()

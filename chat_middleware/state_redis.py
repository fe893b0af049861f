"""The shared state in Redis: the limits of state.py held for the sum of every chatd naming one server.

Each admit and each release is one EVALSHA of a script in state_scripts.py
(a script is loaded on first use and again after NOSCRIPT, e.g. when Redis
restarted). In-flight slots are leases: a task renews this process's live
ones every lease_s / 3 in one call, so the slots of a process that died free
themselves within lease_s.

Every call has its own short deadline (`timeout_s`), never the request's.
When Redis fails or is slow, `on_error="open"` counts in this process
(a LocalState) until `retry_s` has passed, warns once per outage and counts
each failed call in `errors` (and calls `on_state_error`, e.g. a Prometheus
counter); a lease taken in process is released there. `on_error="closed"`
raises StateUnavailable (503, Retry-After: when Redis is tried again)
instead. A release never raises: a slot it could not free expires with its
lease, and its tokens and outcome are counted in process.

    state = RedisState("redis://127.0.0.1:6379/0", key_prefix="chatd:", lease_s=30)
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import Any, Callable, Literal
from urllib.parse import urlsplit

from .errors import ConfigError
from .state import (
    BUSY_RETRY_S, FAILURE_TTL_S, UNLIMITED, WINDOW_S, Cooldown, Lease, Limits, LocalState, Outcome, Refusal,
    StateUnavailable, check_outcome, lease_ids,
)
from .state_scripts import ADMIT, RELEASE, RENEW, SNAPSHOT, Script

log = logging.getLogger("chatd")

SCOPES = ("provider", "client")


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def where(url: str) -> str:
    """host:port/db of a Redis URL, never its password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or ''}"


class RedisState:
    """Limits, leases and cooldowns shared through one Redis server."""

    def __init__(
        self, url: str, *, key_prefix: str = "chatd:", lease_s: float = 30.0,
        on_error: Literal["open", "closed"] = "open", timeout_s: float = 0.25, retry_s: float = 5.0,
        window_s: float = WINDOW_S, failure_ttl_s: float = FAILURE_TTL_S,
        on_state_error: Callable[[], Any] | None = None,
    ) -> None:
        try:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import NoScriptError, RedisError
        except ImportError as exc:
            raise ConfigError("[chatd.state] redis_url needs the redis package: pip install 'chatd[redis]'") from exc
        if on_error not in ("open", "closed"):
            raise ValueError(f'on_error must be "open" or "closed", not {on_error!r}')
        self._redis = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                     retry=Retry(NoBackoff(), 0))
        self._no_script = NoScriptError
        self._faults = (RedisError, OSError, asyncio.TimeoutError)
        self._where = where(url)
        self._prefix = key_prefix
        self._lease_ms = _ms(lease_s)
        self._window_ms = _ms(window_s)
        self._failure_ttl_ms = _ms(failure_ttl_s)
        self._busy_ms = _ms(BUSY_RETRY_S)
        self._retry_s = retry_s
        self._open = on_error == "open"
        self.local = LocalState(window_s=window_s, failure_ttl_s=failure_ttl_s)
        """Where counting goes while Redis cannot be reached (on_error="open")."""
        self.errors = 0
        """Redis calls that failed or ran out of time."""
        self.on_state_error = on_state_error
        self._down_until = 0.0
        self._healthy = True
        self._ids = lease_ids()
        self._keys: dict[tuple[str, str], tuple[str, ...]] = {}
        self._live: dict[str, Lease] = {}
        self._renewer: asyncio.Task | None = None

    def _keys_of(self, scope: str, name: str) -> tuple[str, ...]:
        """in_flight, rpm, tpm, tpm_sum, failures, cooldown of one provider or client."""
        keys = self._keys.get((scope, name))
        if keys is None:
            base = f"{self._prefix}{scope}:{name}:"
            keys = self._keys[scope, name] = tuple(
                base + what for what in ("in_flight", "rpm", "tpm", "tpm_sum", "failures", "cooldown"))
        return keys

    async def admit(
        self, provider: str, provider_limits: Limits, *, client: str | None = None,
        client_limits: Limits | None = None, skip_cooling: bool = False, cooldown: Cooldown = Cooldown(),
    ) -> Lease | Refusal:
        if self._down():
            return self._admit_here(provider, provider_limits, client, client_limits, skip_cooling, cooldown)
        own = self._keys_of("provider", provider)
        lease_id = next(self._ids)
        keys = [own[5]]
        args: list[Any] = [lease_id, self._lease_ms, self._window_ms, 1 if skip_cooling else 0, self._busy_ms]
        names = [("provider", provider)]
        if client is not None:
            client_limits = client_limits or UNLIMITED
            names.insert(0, ("client", client))
            keys += self._keys_of("client", client)[:4]
            args += (client_limits.max_in_flight, client_limits.rpm, client_limits.tpm)
        keys += own[:4]
        args += (provider_limits.max_in_flight, provider_limits.rpm, provider_limits.tpm)
        try:
            reply = await self._call(ADMIT, keys, args)
        except self._faults as exc:
            self._failed(exc)
            return self._admit_here(provider, provider_limits, client, client_limits, skip_cooling, cooldown)
        self._reached()
        if reply is not None:
            limit, index, retry_ms = reply
            scope, name = names[index] if limit != b"cooldown" else names[-1]
            return Refusal(scope, name, limit.decode(), max(0, retry_ms) / 1000)  # type: ignore[arg-type]
        lease = Lease.granted(lease_id, provider, provider_limits, client, client_limits, cooldown, shared=True)
        self._live[lease_id] = lease
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew())
        return lease

    def _admit_here(
        self, provider: str, provider_limits: Limits, client: str | None, client_limits: Limits | None,
        skip_cooling: bool, cooldown: Cooldown,
    ) -> Lease | Refusal:
        if not self._open:
            raise self._unavailable()
        return self.local.admit_now(provider, provider_limits, client, client_limits, skip_cooling, cooldown)

    async def release(self, lease: Lease, *, tokens: int = 0, outcome: Outcome) -> None:
        check_outcome(outcome)
        if lease.released:
            return
        lease.released = True
        if not lease.shared:
            self.local.settle(lease, tokens, outcome)
            return
        self._live.pop(lease.id, None)
        if self._down():
            self.local.settle(lease, tokens, outcome)  # its slot expires in Redis; its outcome counts here
            return
        own = self._keys_of("provider", lease.provider)
        policy = lease.cooldown
        keys = [own[4], own[5], own[0], own[2], own[3]]
        args: list[Any] = [lease.id, max(0, tokens), self._window_ms, outcome, policy.failures,
                           _ms(policy.seconds) if policy.seconds else 0, self._failure_ttl_ms,
                           1 if lease.provider_tpm else 0]
        if lease.client is not None:
            theirs = self._keys_of("client", lease.client)
            keys += (theirs[0], theirs[2], theirs[3])
            args.append(1 if lease.client_tpm else 0)
        try:
            await self._call(RELEASE, keys, args)
        except self._faults as exc:
            self._failed(exc)
            self.local.settle(lease, tokens, outcome)
        else:
            self._reached()

    async def snapshot(self, providers: list[str]) -> dict[str, tuple[int, float]]:
        if not providers:
            return {}
        if self._down():
            return self._snapshot_here(providers)
        keys = []
        for name in providers:
            own = self._keys_of("provider", name)
            keys += (own[0], own[5])
        try:
            view = await self._call(SNAPSHOT, keys, [])
        except self._faults as exc:
            self._failed(exc)
            return self._snapshot_here(providers)
        self._reached()
        return {name: (view[2 * i], view[2 * i + 1] / 1000) for i, name in enumerate(providers)}

    def _snapshot_here(self, providers: list[str]) -> dict[str, tuple[int, float]]:
        if not self._open:
            raise self._unavailable()
        return self.local.snapshot_now(providers)

    async def aclose(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        await self._redis.aclose()

    async def _call(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """One EVALSHA within the call's own deadline — the client's socket timeouts, `timeout_s` for
        connecting and for every read, cheaper than a timer task per call; a script Redis lost is
        loaded again first."""
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except self._no_script:
            await self._redis.script_load(script.source)
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)

    async def _renew(self) -> None:
        """Push the expiry of this process's live leases on, every lease_s / 3, while there are any."""
        try:
            while self._live:
                await asyncio.sleep(self._lease_ms / 3000)
                if self._down() or not self._live:
                    continue
                by_key: dict[str, list[str]] = {}
                for lease in self._live.values():
                    by_key.setdefault(self._keys_of("provider", lease.provider)[0], []).append(lease.id)
                    if lease.client is not None:
                        by_key.setdefault(self._keys_of("client", lease.client)[0], []).append(lease.id)
                args: list[Any] = [self._lease_ms]
                for ids in by_key.values():
                    args += (len(ids), *ids)
                try:
                    await self._call(RENEW, list(by_key), args)
                except self._faults as exc:
                    self._failed(exc)
                else:
                    self._reached()
        finally:
            if self._renewer is asyncio.current_task():
                self._renewer = None

    def _unavailable(self) -> StateUnavailable:
        return StateUnavailable(f"shared state at {self._where} cannot be reached",
                                retry_after=max(0.0, self._down_until - monotonic()))

    def _down(self) -> bool:
        return self._down_until > monotonic()

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self.on_state_error is not None:
            self.on_state_error()
        self._down_until = monotonic() + self._retry_s
        if self._healthy:
            self._healthy = False
            then = "counting in this process" if self._open else "answering 503"
            log.warning("shared state at %s failed (%s): %s; trying again in %gs",
                        self._where, type(exc).__name__, then, self._retry_s)

    def _reached(self) -> None:
        if not self._healthy:
            self._healthy = True
            log.warning("shared state at %s reachable again: limits are shared once more", self._where)

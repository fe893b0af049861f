"""Before each upstream attempt the relay asks the shared state for room; after it, it says how it went.

One Admission per Config builds every provider's Limits and Cooldown and
every named client's Limits once, so an attempt costs one `State.admit` and
one `State.release` — with Redis, one round trip before the upstream is
asked and one after.

What counts (docs/decisions.md): a provider's limits count attempts, every
call it receives, retries included. A client's `rpm` counts requests: once one
attempt of a request was admitted, its retries and fallbacks ask without the
client's rpm, while the client's `max_in_flight` and `tpm` still hold. A
client without limits is not counted at all.

    grant = await admission.admit("kimi", "team-a", again=False, skip_cooling=True)
    if isinstance(grant, RequestError):   # LimitReached (429) or StateUnavailable (503)
        ...
    try:
        ...                               # the upstream attempt
    finally:
        await admission.release(grant, attempt, "success")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import LimitReached, RequestError, UpstreamError
from .metrics import rate_limited
from .settings import Config
from .state import UNLIMITED, Cooldown, Lease, Limits, Outcome, Refusal, State, StateUnavailable

if TYPE_CHECKING:
    from .exchange import Attempt


def outcome_of(error: RequestError | None) -> Outcome:
    """How an attempt ended, for the provider's cooldown: only the provider's own faults count."""
    if error is None:
        return "success"
    if isinstance(error, UpstreamError) and error.provider_fault:
        return "failure"
    return "neutral"


def refused(refusal: Refusal, limits: Limits) -> LimitReached:
    """The 429 a client sees for a refusal, saying which limit of whom, and when to try again."""
    who = f"{refusal.scope} {refusal.name!r}"
    if refusal.limit == "cooldown":
        what = f"{who} is cooling down after repeated failures"
    elif refusal.limit == "max_in_flight":
        what = f"{who} already has {limits.max_in_flight} requests in flight (max_in_flight)"
    elif refusal.limit == "rpm":
        what = f"{who} has made its {limits.rpm} requests of the last minute (rpm)"
    else:
        what = f"{who} has used its {limits.tpm} tokens of the last minute (tpm)"
    retry_after = refusal.retry_after_header
    return LimitReached(f"{what}; retry in {retry_after} s", scope=refusal.scope, code=refusal.code,
                        retry_after=retry_after)


class Admission:
    """The limits of one Config's providers and clients, counted by a State that outlives the Config."""

    __slots__ = ("state", "_providers", "_clients")

    def __init__(self, config: Config, state: State) -> None:
        self.state = state
        self._providers: dict[str, tuple[Limits, Cooldown]] = {}
        for name, provider in config.providers.items():
            policy = provider.resilience
            self._providers[name] = (Limits(max_in_flight=policy.max_in_flight, rpm=policy.rpm, tpm=policy.tpm),
                                     Cooldown(failures=policy.cooldown_failures, seconds=policy.cooldown))
        self._clients: dict[str, tuple[Limits, Limits]] = {}
        for name, client in config.clients.items():
            limits = Limits(max_in_flight=client.max_in_flight, rpm=client.rpm, tpm=client.tpm)
            if limits != UNLIMITED:  # (a request's first attempt, its later ones)
                self._clients[name] = (limits, Limits(max_in_flight=client.max_in_flight, tpm=client.tpm))

    async def admit(
        self, provider: str, client: str | None, *, again: bool, skip_cooling: bool
    ) -> Lease | RequestError:
        """A lease for one attempt, or the error to answer: LimitReached, or StateUnavailable.

        `again`: an earlier attempt of the same request was admitted (its rpm is counted).
        `skip_cooling`: refuse a provider in cooldown (every entry of a chain but its last).
        """
        limits, cooldown = self._providers[provider]
        own = self._clients.get(client) if client is not None else None
        client_limits = None if own is None else own[1] if again else own[0]
        try:
            grant = await self.state.admit(provider, limits, client=client if own else None,
                                           client_limits=client_limits, skip_cooling=skip_cooling,
                                           cooldown=cooldown)
        except StateUnavailable as exc:
            return exc
        if isinstance(grant, Refusal):
            rate_limited(grant.scope, grant.name, grant.limit)
            return refused(grant, client_limits if grant.scope == "client" else limits)  # type: ignore[arg-type]
        return grant

    async def release(self, lease: Lease, attempt: Attempt | None, outcome: Outcome) -> None:
        """Free the attempt's slots and count its tokens (in + out, as the upstream reported them)."""
        tokens = attempt.tokens_in + attempt.tokens_out if attempt is not None else 0
        await self.state.release(lease, tokens=tokens, outcome=outcome)

"""When to ask a provider again, and how long to wait in between.

Pure policy; the relay does the asking. Whether to skip a provider — its
cooldown and limits — is the shared state's to say (state.py, admission.py).
"""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime
from time import time

from .settings import Resilience
from .errors import UpstreamError, UpstreamRateLimited


def retry_delay(error: UpstreamError, attempt: int, policy: Resilience) -> float | None:
    """Seconds to wait before asking the same provider again, or None for "do not".

    Retry-After is honoured up to retry_after_max; longer than that, chatd moves
    on rather than hold the client. Otherwise exponential backoff with jitter.
    """
    if not error.retriable or attempt >= policy.retries:
        return None
    if isinstance(error, UpstreamRateLimited) and error.retry_after:
        wait = retry_after_seconds(error.retry_after)
        if wait is not None:
            return wait if wait <= policy.retry_after_max else None
    backoff = min(policy.backoff_max, policy.backoff * 2**attempt)
    return backoff * random.uniform(0.5, 1.0)


def retry_after_seconds(value: str) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None

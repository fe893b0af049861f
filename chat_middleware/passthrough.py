"""Same-kind passthrough: the client's own request bytes, with only `model` rewritten.

When a client speaks the upstream's own API, nothing a translation could lose —
cache_control, thinking signatures, fields chatd has never heard of — may be
lost, and nothing is re-encoded: the bytes go upstream as they came, but for the
model name the route chose.

    with_model(b'{"model":"openrouter/x","messages":[]}', body, "x")  # → b'{"model":"x","messages":[]}'
"""

from __future__ import annotations

import re

import orjson

from .shapes import encode_request

_KEY = b'"model"'
_SPELLINGS = (b'"model":', b'"model": ')
_MODEL = re.compile(rb'"model"\s*:\s*("(?:[^"\\]|\\.)*")')
"""A key named model with a string value. Inside a JSON string every quote is escaped, so only a
key can match; whether it is the top-level one is told by its value (see `with_model`)."""


def with_model(raw: bytes, body: dict, model: str) -> bytes:
    """`raw` (which parsed to `body`) with its top-level `model` set to `model`.

    The top-level value is found as the one `model` key whose value is spelled as `body["model"]`
    is — in the usual body, the one `"model"` there is, found by two byte searches. When that is
    not exactly one key — a client that escapes plain characters, the same name again in a nested
    object — the body is encoded anew instead: still only `model` changes.
    """
    spelled = orjson.dumps(body["model"])
    if raw.count(_KEY) == 1:  # the usual body: one key named model, written `"model":"…"` or `"model": "…"`
        for key in _SPELLINGS:
            at = raw.find(key + spelled)
            if at >= 0:
                at += len(key)
                return b"".join((raw[:at], orjson.dumps(model), raw[at + len(spelled):]))
    found = [match for match in _MODEL.finditer(raw) if match.group(1) == spelled]
    if len(found) != 1:
        return encode_request({**body, "model": model})
    start, end = found[0].span(1)
    return b"".join((raw[:start], orjson.dumps(model), raw[end:]))


def with_field(raw: bytes, key: str, value: object) -> bytes:
    """`raw`, a JSON object with at least one key but not `key`, with `key` added before the others."""
    opening = raw.find(b"{") + 1
    return b"".join((raw[:opening], orjson.dumps(key), b":", orjson.dumps(value), b",", raw[opening:]))

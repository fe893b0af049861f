"""docs/configuration.md lists exactly the keys config.py accepts, with their types and defaults.

The doc's convention: under a `## \\`[table]\\`` heading, a markdown table whose
first column is `key` has one row per key, the key in backticks, with `type`
and `default` columns. A `[chatd]` row marked `yes` under `per provider` is a
key a `[chatd.providers.NAME]` block may set too.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from chat_middleware import config as config_module
from chat_middleware.config import (
    CHATD_KEYS, CLIENT_KEYS, GATEWAY_KEYS, PROVIDER_KEYS, ROUTE_KEYS, STATE_KEYS, parse_config,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
SCHEMAS = {
    "[chatd]": CHATD_KEYS,
    "[chatd.providers.NAME]": PROVIDER_KEYS,
    "[chatd.state]": STATE_KEYS,
    "[chatd.clients.NAME]": CLIENT_KEYS,
    "[[chatd.routes]]": ROUTE_KEYS,
    "[gateway]": GATEWAY_KEYS,
}
TYPE_WORDS = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "table", list: "array"}
NEW_PROVIDER = {"transform": "openai", "base_url": "http://127.0.0.1:9"}
NEW_CLIENT = {"key_env": "CLIENT_KEYS"}
ENVIRON = {"CLIENT_KEYS": "k-1"}


def documented() -> dict[str, dict[str, dict[str, str]]]:
    """table heading → key → {column: cell} for every key row under that heading."""
    sections: dict[str, dict[str, dict[str, str]]] = {}
    rows: dict[str, dict[str, str]] = {}
    header: list[str] = []
    for line in DOC.read_text().splitlines():
        heading = re.match(r"## `([^`]+)`", line)
        if heading:
            rows = sections.setdefault(heading[1], {})
            header = []
            continue
        if not line.startswith("|"):
            header = []
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not header:
            header = [re.sub(r"\s*\(.*\)", "", cell) for cell in cells]  # "default (new provider)"
        elif header[0] == "key" and not set(line) <= set("|- "):
            for key in re.findall(r"`([^`]+)`", cells[0]):
                assert key not in rows, f"{key} is documented twice"
                rows[key] = dict(zip(header, cells))
    return sections


DOCUMENTED = documented()


def documented_keys(table: str) -> set[str]:
    keys = set(DOCUMENTED.get(table, {}))
    if table == "[chatd.providers.NAME]":
        keys |= {key for key, row in DOCUMENTED["[chatd]"].items() if row.get("per provider") == "yes"}
    return keys


def test_every_schema_in_config_py_has_a_section():
    schemas = {name for name in vars(config_module) if re.fullmatch(r"[A-Z]+_KEYS", name)}
    assert schemas == {"CHATD_KEYS", "PROVIDER_KEYS", "STATE_KEYS", "CLIENT_KEYS", "ROUTE_KEYS", "GATEWAY_KEYS"}, \
        "a new schema: document it"
    assert set(SCHEMAS) <= set(DOCUMENTED)


@pytest.mark.parametrize("table", SCHEMAS)
def test_the_doc_lists_exactly_the_keys_config_py_accepts(table):
    code, doc = set(SCHEMAS[table]), documented_keys(table)
    assert code - doc == set(), f"{table}: accepted by config.py but not documented"
    assert doc - code == set(), f"{table}: documented but config.py rejects it"


def type_words(types: tuple[type, ...]) -> set[str]:
    """How the doc names what a key accepts: an int-or-float is a "number"."""
    return {"number"} if set(types) == {int, float} else {TYPE_WORDS[t] for t in types}


@pytest.mark.parametrize("table", SCHEMAS)
def test_documented_types_match_what_config_py_accepts(table):
    for key, row in DOCUMENTED[table].items():
        words = set(re.findall(r"[a-z]+", row["type"].split("(")[0]))
        assert type_words(SCHEMAS[table][key][0]) <= words, f"{table} {key}: type {row['type']!r}"
        assert "number" not in words or float in SCHEMAS[table][key][0], f"{table} {key} takes integers only"


def literal(cell: str) -> tuple[bool, object]:
    """The TOML value a default cell starts with, if it starts with one."""
    match = re.match(r"`([^`]+)`", cell)
    if not match:
        return False, None
    try:
        return True, tomllib.loads(f"v = {match[1]}")["v"]
    except tomllib.TOMLDecodeError:
        return False, None


def as_config(table: str, key: str, value: object) -> dict:
    """The smallest config that sets `key` of `table` to `value`."""
    if table == "[chatd]":
        return {"chatd": {key: value}}
    if table == "[chatd.providers.NAME]":
        return {"chatd": {"providers": {"new": {**NEW_PROVIDER, key: value}}}}
    if table == "[chatd.state]":
        return {"chatd": {"state": {key: value}}}
    if table == "[chatd.clients.NAME]":
        return {"chatd": {"clients": {"new": {**NEW_CLIENT, key: value}}}}
    return {"gateway": {key: value}}


BASES = {"[chatd.providers.NAME]": {"chatd": {"providers": {"new": NEW_PROVIDER}}},
         "[chatd.clients.NAME]": {"chatd": {"clients": {"new": NEW_CLIENT}}}}


@pytest.mark.parametrize("table", ["[chatd]", "[chatd.providers.NAME]", "[chatd.state]", "[chatd.clients.NAME]",
                                   "[gateway]"])
def test_documented_defaults_are_what_config_py_uses(table):
    """Setting a key to its documented default changes nothing."""
    unset = parse_config(BASES.get(table, {}), environ=ENVIRON)
    checked = 0
    for key, row in DOCUMENTED[table].items():
        found, value = literal(row["default"])
        scalar = not {dict, list} & set(SCHEMAS[table][key][0])
        assert found or not (scalar and table == "[chatd]"), f"{table} {key}: no default documented"
        if found:
            assert parse_config(as_config(table, key, value), environ=ENVIRON) == unset, f"{table} {key} = {value!r}"
            checked += 1
    assert checked

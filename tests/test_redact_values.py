"""`redact_values`: ingest's redaction of many payloads at once gives `redact_obj`'s result for each, and
hands back a payload with nothing to redact as itself (no copy: most payloads hold no secret)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.test_redact import ORDINARY, corpus

from agenttrail.redact import redact_obj, redact_values

TOKENS = [token for _, _, token, _ in corpus()]
KEYS = ["argv", "cwd", "text", "password", "api_key", "Authorization", "x-api-key", "secret_token", "tokens", "note"]


def test_clean_payloads_come_back_as_themselves() -> None:
    payloads = [{"argv": ["git", "status"], "cwd": "/src/app", "pid": 7}, {"text": ORDINARY[0], "n": [1, 2.5, None]}]
    out = redact_values(payloads)
    assert out == payloads and all(a is b for a, b in zip(out, payloads, strict=True))


def test_a_value_under_a_credential_key_is_redacted_without_a_known_shape() -> None:
    clean = {"argv": ["ls"]}
    keyed = {"env": {"DB_PASSWORD": "hunter2-xyz"}, "text": "hello"}
    out = redact_values([clean, keyed])
    assert out[0] is clean
    assert out[1] == redact_obj(keyed) and "hunter2" not in str(out[1])
    assert keyed == {"env": {"DB_PASSWORD": "hunter2-xyz"}, "text": "hello"}  # the input is left as it was


def test_a_known_shape_anywhere_is_redacted_in_every_payload() -> None:
    payloads = [{"argv": ["curl", "-H", f"Authorization: Bearer {TOKENS[0]}"]}, {"text": f"key {TOKENS[1]} here"}]
    out = redact_values(payloads)
    assert out == [redact_obj(p) for p in payloads]
    assert TOKENS[0] not in str(out) and TOKENS[1] not in str(out)


_leaf = st.one_of(
    st.sampled_from(TOKENS), st.sampled_from(ORDINARY), st.text(max_size=20), st.integers(), st.none(), st.booleans()
)
_value = st.recursive(
    _leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(KEYS), _value, max_size=4), max_size=5))
def test_each_payload_is_redacted_as_redact_obj_would(payloads: list[dict[str, Any]]) -> None:
    out = redact_values(payloads)
    assert out == [redact_obj(p) for p in payloads]
    for before, after in zip(payloads, out, strict=True):
        if after is before:  # handed back itself only when redact_obj changes nothing in it
            assert redact_obj(before) == before

"""Redaction's prefilter skips rules, never a secret: the fast path gives exactly what running every rule
over every string gives (`_run_rules(text, None)`, the plain path), on strings that embed secrets."""

from __future__ import annotations

import random
import re
import string
import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.test_redact import CONTEXTS, FRAGMENTS, ORDINARY, SHAPES, contextual, corpus

from agenttrail import redact
from agenttrail.redact import PREFIX, placeholder, redact_obj, redact_text


def plain_text(text: str) -> str:
    return redact._run_rules(text, None)


def plain_obj(obj: Any) -> Any:
    """redact_obj as documented, every string through the plain path."""
    if isinstance(obj, str):
        return plain_text(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            red = plain_obj(v)
            out[k] = redact._redact_value_for_key(str(k), red) if isinstance(red, str) else red
        return out
    if isinstance(obj, list):
        return [plain_obj(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain_obj(v) for v in obj)
    return obj


def tokens(seed: int) -> list[str]:
    rng = random.Random(seed)
    return [gen(rng)[0] for _, _, gen in SHAPES]


# Pieces of secrets and of their contexts, upper and lower case, and characters whose case mapping is
# unusual: 'İ' lowercases to two characters, the Kelvin sign to an ASCII 'k', and IGNORECASE matching
# folds long s and dotless i to ASCII letters.
PIECES = [
    *FRAGMENTS,
    *tokens(1),
    "TOKEN",
    "SECRET",
    "_PASSWORD=",
    "DB_PASS: ",
    "api_key",
    "Api-Key: ",
    "AUTHORIZATION: Basic ",
    "bearer ",
    "aws_secret_access_key = ",
    "SecretAccessKey",
    "secret_key",
    "[REDACTED:aws_access_key],",
    "https://user:",
    "@host/",
    "curl --user ",
    "pass",
    "_pwd",
    "=>",
    ":=",
    "İ",
    "\u212a",
    "\u017f",
    "\u0131",
    "é",
    "—",
    "\U0001f600",
    "\x00",
    "\t",
]
SECRETISH = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(alphabet=string.ascii_letters + string.digits + "/+=", max_size=45)),
    max_size=40,
).map("".join)


@settings(max_examples=1500, deadline=None)
@given(SECRETISH)
def test_fast_path_equals_every_rule_on_generated_text(text: str) -> None:
    assert redact_text(text) == plain_text(text)


def documents() -> list[str]:
    """Secrets written where they are found: every shape in every context, and the context-only ones."""
    docs = [CONTEXTS[c](token)[0] for _, _, token, _ in corpus() for c in CONTEXTS]
    return docs + [doc for case in range(21) for doc, _, _ in contextual(random.Random(case))]


# Look-alikes the case mappings treat as ASCII letters: the Kelvin sign lowercases to 'k'; IGNORECASE
# (used when the text holds 'İ') also matches long s for 's' and dotless i for 'i'.
LOOKALIKES = {"k": "\u212a", "K": "\u212a", "s": "\u017f", "i": "\u0131", "I": "İ"}


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(documents()),
    st.randoms(use_true_random=False),
    st.sampled_from(["", "İ ", "é ", "İ\u212a "]),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_fast_path_equals_every_rule_with_case_lookalikes(doc: str, rng: random.Random, lead: str, p: float) -> None:
    text = lead + "".join(LOOKALIKES[c] if c in LOOKALIKES and rng.random() < p else c for c in doc)
    assert redact_text(text) == plain_text(text)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.one_of(
            SECRETISH, st.sampled_from(documents()), st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False)
        ),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(inner, max_size=3).map(tuple),
            st.dictionaries(
                st.sampled_from(["password", "x-api-key", "accessToken", "Cookie", "Authorization", "text", "n"]),
                inner,
                max_size=4,
            ),
        ),
        max_leaves=12,
    )
)
def test_fast_path_equals_every_rule_on_generated_payloads(obj: Any) -> None:
    assert redact_obj(obj) == plain_obj(obj)


def test_fast_path_equals_every_rule_on_the_redaction_corpus() -> None:
    for doc in documents() + ORDINARY:
        assert redact_text(doc) == plain_text(doc)


def test_every_match_of_a_rule_holds_one_of_its_needles() -> None:
    """The needles gate their rule, so they must be exact: checked on every match in the corpus."""
    docs = documents()
    docs += [redact_text(d) for d in docs]  # placeholders are needles too (the AWS key id before its secret)
    for rule in redact._RULES:
        for doc in docs:
            subject = doc.lower() if rule.fold else doc
            for m in rule.pattern.finditer(subject):
                assert any(n in m.group(0) for n in rule.needles), (rule.kind, m.group(0))
                if rule.also:
                    assert any(n in m.group(0) for n in rule.also), (rule.kind, m.group(0))


def test_the_prefilter_finds_every_needle_of_every_rule() -> None:
    for i, rule in enumerate(redact._RULES):
        for n in rule.needles:
            assert i in redact._candidates(f"prose {n} prose"), (rule.kind, n)
            assert i in redact._candidates(f"é {n.upper() if rule.fold else n} —"), (rule.kind, n)


def test_only_the_listed_characters_lowercase_to_ascii() -> None:
    found = [
        chr(c)
        for c in range(128, sys.maxunicode + 1)
        if not 0xD800 <= c <= 0xDFFF and any(ch.isascii() for ch in chr(c).lower())
    ]
    assert tuple(found) == redact._LOWER_TO_ASCII


def test_ordinary_strings_run_no_rule() -> None:
    payload = {
        "text": "the agent reads the file then runs the tests and fixes what fails before it commits",
        "model": "claude-sonnet-4-5",
        "call_id": "0f3c1e8b9a7d4c2e8f6a5b4c3d2e1f00",
        "cwd": "/home/dev/repo3",
        "ts": "2026-05-04T09:00:00.250Z",
        "input_tokens": 12,
    }
    assert all(not redact._candidates(v) for v in payload.values() if isinstance(v, str))
    assert redact_obj(payload) == payload


def test_a_replacement_brings_needles_only_inside_its_placeholder() -> None:
    # After a replacement only the placeholders' own needles are added (redact._IN_PLACEHOLDERS), which
    # holds while no needle reaches across a placeholder's brackets and every kind written is listed.
    for rule in redact._RULES:
        for n in rule.needles:
            assert ("[" not in n and "]" not in n) or n == placeholder(n[len(PREFIX) : -1]), n
    written = {m for doc in documents() for m in re.findall(r"\[REDACTED:([a-z_0-9]+)\]", redact_text(doc))}
    assert written <= set(redact._KINDS)

"""`store.event_fields`: the quick look at a value agrees with the full rule for every column."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agenttrail.store.event_fields import _columns, _fits
from agenttrail.store.tables import agent_session, file_change, git_commit, llm_call

TABLES = (agent_session, file_change, git_commit, llm_call)
COLUMNS = [(t, c.name) for t in TABLES for c in t.columns]
VALUES = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.text(min_size=60, max_size=300),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(st.sampled_from(COLUMNS), VALUES)
def test_a_value_is_refused_exactly_when_its_column_cannot_hold_it(column: tuple[Any, str], value: Any) -> None:
    table, name = column
    expected = _fits(table.c[name], value)
    got = list(_columns(table, {name: value}, [name], "payload"))
    assert got == ([f"payload.{name} {expected}"] if expected else [])

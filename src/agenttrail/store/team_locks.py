"""Which teams' period roll-up rows an ingest batch will write, so that it locks only those (0013).

Every row of `call_daily`, `call_monthly`, `session_week` and `pr_team` has a team in its key. A batch
writes the rows of: its sessions' teams (a start's `team_id`, else the key's; a session stored before,
its stored team, which a start may change), and its calls' teams (a call's `team_id`, else the key's).
What it cannot know beforehand (a gateway call of another team that one of its sessions claims, an
imported session taken over) is caught by 0013's guards before any shared row is written; ingest then
stores the batch again under the store-wide lock. Without a key (a local import) a batch has no team to
go by and takes the store-wide lock, as every other writer does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from agenttrail import events as ev
from agenttrail.events import Event
from agenttrail.store.locks import lock_call_periods, lock_call_teams

if TYPE_CHECKING:
    from agenttrail.store.ingest import Attribution

OTHER_TEAM = "AT001"  # the SQLSTATE of 0013's guards


def _team(value: Any, default: int | None) -> int:
    """A row's team as the roll-ups key it: its own `team_id` when it is an int, else the key's; none is 0."""
    team = value if isinstance(value, int) and not isinstance(value, bool) else default
    return team if team is not None else 0


def batch_teams(conn: Connection, events: Iterable[Event], who: Attribution, sessions: set[str]) -> set[int] | None:
    """The teams whose period roll-up rows the batch will write, or None for the store-wide lock."""
    if conn.dialect.name != "postgresql" or who.team_id is None:
        return None
    teams: set[int] = set()
    for e in events:
        if e.kind in (ev.SESSION_START, ev.SESSION_END):
            teams.add(_team(e.payload.get("team_id"), who.team_id))
        elif e.kind == ev.LLM_CALL:
            record = e.payload.get("record")
            if isinstance(record, dict):
                # Ingest's own calls keep a team_id that is there but empty (no team: 0).
                teams.add(_team(record.get("team_id"), who.team_id))
                if "team_id" in record and record["team_id"] is None:
                    teams.add(0)
    if sessions:
        stored = conn.exec_driver_sql(
            "SELECT DISTINCT COALESCE(team_id, 0) FROM session_rollup WHERE session_id = ANY(%s)", (sorted(sessions),)
        )
        teams.update(int(t) for (t,) in stored)
    return teams


class CallsLock:
    """The calls' period lock of one ingest transaction, taken once, as late as it can be: the batch's
    teams when it knows them, else the store-wide lock."""

    def __init__(self, conn: Connection, teams: set[int] | None) -> None:
        self.conn, self.teams, self.taken = conn, teams, False

    def take(self) -> None:
        if self.taken:
            return
        self.taken = True
        if self.teams is None:
            lock_call_periods(self.conn)
        else:
            lock_call_teams(self.conn, self.teams)

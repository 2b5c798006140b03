"""What every report shares: the filters, the result shape, and running SQL over the views.

A report is a list of named sections (tables). The CLI renders each as a table, or one as CSV; the
API and `--format json` give the same object: `{"report", "filters", "sections": {name: [rows]}, "notes"}`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from agenttrail.query.readonly_sql import jsonable
from agenttrail.store.ingest import iso_week


@dataclass(frozen=True, slots=True)
class Filters:
    """Period (naive UTC, `until` exclusive), team and repo. A lead's API token forces `team`."""

    since: datetime | None = None
    until: datetime | None = None
    team: str | None = None
    repo: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "team": self.team,
            "repo": self.repo,
        }

    def where(
        self,
        *,
        time_col: str,
        team_col: str | None = "team",
        repo_col: str | None = "repo",
        team_id_col: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A WHERE clause (never empty) and its parameters, for columns of one view. With `team_id_col`
        the team is matched by id (looked up once), so an index on the id column can serve it."""
        parts: list[str] = ["1=1"]
        params: dict[str, Any] = {}
        if self.since is not None:
            parts.append(f"{time_col} >= :since")
            params["since"] = self.since
        if self.until is not None:
            parts.append(f"{time_col} < :until")
            params["until"] = self.until
        if self.team is not None and team_id_col:
            parts.append(f"{team_id_col} = (SELECT team_id FROM teams WHERE team = :team)")
            params["team"] = self.team
        elif self.team is not None and team_col:
            parts.append(f"{team_col} = :team")
            params["team"] = self.team
        if self.repo is not None and repo_col:
            parts.append(f"{repo_col} = :repo")
            params["repo"] = self.repo
        return " AND ".join(parts), params

    def day_aligned(self) -> bool:
        """True when the period is whole UTC days, so the daily roll-up answers it exactly."""
        return all(
            t is None or (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0) for t in (self.since, self.until)
        )


class FilterError(ValueError):
    """Filters that can only match nothing, by mistake: a team the directory does not have, a period
    that ends before it starts. Said, rather than answered with an empty report that reads as "none"."""


def check_filters(engine: Engine, f: Filters) -> None:
    if f.since is not None and f.until is not None and f.since >= f.until:
        raise FilterError(
            f"the period is empty: it starts {f.since:%Y-%m-%d %H:%M} and ends {f.until:%Y-%m-%d %H:%M} UTC "
            "(--until is exclusive, and a date means the end of that day)"
        )
    if f.repo is not None:
        _check_repo(engine, f.repo)
    if f.team is None:
        return
    with engine.connect() as conn:
        if conn.execute(text("SELECT 1 FROM teams WHERE team = :team"), {"team": f.team}).first():
            return
        names = list(conn.execute(text("SELECT team FROM teams ORDER BY team LIMIT 11")).scalars())
    if not names:
        raise FilterError(f"no team {f.team!r}: the directory has no teams yet (agenttrail team add NAME)")
    listed = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
    raise FilterError(f"no team {f.team!r}; the teams are: {listed}")


def _check_repo(engine: Engine, repo: str) -> None:
    """A repo no session, merged PR or project names: most likely written another way than sessions
    write it (`acme/pay` for `github.com/acme/pay`). Each probe is one index lookup."""
    with engine.connect() as conn:
        for view in ("sessions", "pull_requests", "projects"):
            if conn.execute(text(f"SELECT 1 FROM {view} WHERE repo = :repo LIMIT 1"), {"repo": repo}).first():
                return
        tail = "%/" + repo.strip("/").replace("\\", "").replace("%", "").replace("_", "\\_")
        near = list(
            conn.execute(
                text("SELECT DISTINCT repo FROM projects WHERE repo LIKE :tail ESCAPE '\\' ORDER BY repo LIMIT 3"),
                {"tail": tail},
            ).scalars()
        )
    hint = f"; did you mean {' or '.join(near)}?" if near else " (a repo is named host/owner/name, as sessions name it)"
    raise FilterError(f"no session, merged PR or project names repo {repo!r}{hint}")


@dataclass(slots=True)
class Section:
    name: str
    title: str
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, (jsonable(v) for v in r), strict=True)) for r in self.rows]


@dataclass(slots=True)
class Report:
    name: str
    filters: Filters
    sections: list[Section]
    notes: list[str] = field(default_factory=list)

    def section(self, name: str) -> Section:
        for s in self.sections:
            if s.name == name:
                return s
        raise KeyError(f"report {self.name} has no section {name!r}; it has {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [s.name for s in self.sections]

    def to_json(self) -> dict[str, Any]:
        return {
            "report": self.name,
            "filters": self.filters.as_dict(),
            "sections": {s.name: s.records() for s in self.sections},
            "notes": self.notes,
        }


REPORT_WORK_MEM = "256MB"
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def fetch(
    engine: Engine,
    sql: str,
    params: dict[str, Any] | None = None,
    *,
    hash_groups: bool = False,
    hash_joins: bool = False,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and plain tuples, through the driver's own cursor.

    Reports read up to a million rows; SQLAlchemy's Row objects cost about a microsecond each on top of
    the driver, as much as SQLite's scan itself. Parameters are written `:name` (psycopg wants
    `%(name)s`); SQL sent to PostgreSQL has no `%` and no `::` casts of its own.

    `hash_groups`: on PostgreSQL, group by hashing even where the planner would sort. It multiplies
    the distinct values of each grouping column (a million (repo, engineer) pairs where there are ten
    thousand), and with list-building aggregates (string_agg) then sorts a million rows by text: 2.2 s
    where hashing takes 1.1 s.

    `hash_joins`: on PostgreSQL, no nested-loop joins: with a CTE's output (whose size the planner
    guesses) it looked a hundred thousand rows up one by one where one hash join reads them once."""
    params = params or {}
    with engine.connect() as conn:
        dbapi = conn.connection.driver_connection
        assert dbapi is not None
        if conn.dialect.name == "postgresql":
            sql = _NAMED.sub(r"%(\1)s", sql)
        else:
            # As SQLAlchemy stores them, so text comparison orders them right.
            params = {k: _sqlite_time(v) for k, v in params.items()}
        cur = dbapi.cursor()
        try:
            if conn.dialect.name == "postgresql":
                # For this transaction only: room to sort and hash a million rows in memory (the 4 MB
                # default spills them to disk), and no JIT, whose compile time these plain scans never win back.
                cur.execute(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
                cur.execute("SET LOCAL jit = off")
                # Floats as text read back exactly (any setting above 0 gives the shortest exact form).
                cur.execute("SET LOCAL extra_float_digits = 1")
                # The roll-ups a report reads are hot in memory: a random page costs about what a
                # sequential one does (the default 4 models a spinning disk, and made the planner hash a
                # million heap rows rather than read a covering index in order: adoption 2 s vs 1 s).
                cur.execute("SET LOCAL random_page_cost = 1.1")
                if hash_groups:
                    cur.execute("SET LOCAL enable_sort = off")
                if hash_joins:
                    cur.execute("SET LOCAL enable_nestloop = off")
            cur.execute(sql, params)
            cols = [d[0] for d in cur.description or ()]
            rows = cur.fetchall()
        finally:
            cur.close()
    return cols, [tuple(r) for r in rows] if rows and not isinstance(rows[0], tuple) else rows


def _sqlite_time(v: Any) -> Any:
    return v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v


def scan_col(engine: Engine, col: str) -> str:
    """A column for a period filter that should not choose the index (SQLite's unary `+`).

    SQLite has no statistics unless ANALYZE runs, so for any two-sided range it guesses a few percent
    of the rows and takes the time index, then reads each row at random; for report periods (weeks to
    months of a quarter's data) reading the report's covering index in order measured twice as fast.
    PostgreSQL has statistics and chooses for itself."""
    return f"+{col}" if engine.dialect.name == "sqlite" else col


def team_names(engine: Engine) -> dict[int, str]:
    """team id -> name: reports group by id (indexable, no lookup per row) and name the few groups."""
    return {int(i): str(n) for i, n in fetch(engine, "SELECT team_id, team FROM teams")[1]}


def as_time(v: Any) -> Any:
    """SQLite gives a view's timestamps back as text; make them datetimes like PostgreSQL does."""
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v)
        except ValueError:
            return v
    return v


def as_float(v: Any) -> float:
    return float(v) if v is not None else 0.0


def share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, slots=True)
class Weeks:
    """A period as the whole ISO weeks inside it, which the weekly roll-up (`session_week`) answers,
    and the pieces of weeks at its ends, which only the sessions can. A session's week is the ISO week
    of its start (ingest writes both together), so a whole week's sessions all lie in the period."""

    whole: bool  # whether any whole week is inside the period
    first: str | None  # the first whole week (None: from the first there is)
    end: str | None  # the first week after the whole ones (None: up to the last there is)
    pieces: tuple[tuple[str, datetime, datetime], ...]  # (week, since, until), each inside one week

    def where(self) -> tuple[str, dict[str, Any]]:
        """The whole weeks, over the roll-up's `week` (ISO week text sorts in time order)."""
        parts, params = ["1=1"], {}
        if self.first is not None:
            parts.append("week >= :whole_first")
            params["whole_first"] = self.first
        if self.end is not None:
            parts.append("week < :whole_end")
            params["whole_end"] = self.end
        return " AND ".join(parts), params

    def pieces_where(self, engine: Engine) -> tuple[str, dict[str, Any]] | None:
        """The pieces, over the `sessions` view: by week (an index term on SQLite) and time."""
        if not self.pieces:
            return None
        at = scan_col(engine, "started_at")
        parts: list[str] = []
        params: dict[str, Any] = {}
        for i, (week, since, until) in enumerate(self.pieces):
            parts.append(f"(week = :piece_w{i} AND {at} >= :piece_a{i} AND {at} < :piece_b{i})")
            params |= {f"piece_w{i}": week, f"piece_a{i}": since, f"piece_b{i}": until}
        return "(" + " OR ".join(parts) + ")", params


def _monday(t: datetime) -> datetime:
    return datetime(t.year, t.month, t.day) - timedelta(days=t.weekday())


def split_weeks(since: datetime | None, until: datetime | None) -> Weeks:
    """[since, until) (either open) as whole weeks and the pieces of weeks at its ends."""
    lo = None if since is None else _monday(since) + timedelta(days=7 if _monday(since) < since else 0)
    hi = None if until is None else _monday(until)
    if lo is not None and hi is not None and lo >= hi:
        # Under a whole week: at most one Monday falls inside, and cuts it in two.
        assert since is not None and until is not None
        cuts = [t for t in (since, hi, until) if since <= t <= until]
        pieces = tuple((iso_week(a), a, b) for a, b in itertools.pairwise(cuts) if a < b)
        return Weeks(False, None, None, pieces)
    edges = []
    if since is not None and lo is not None and since < lo:
        edges.append((iso_week(since), since, lo))
    if until is not None and hi is not None and hi < until:
        edges.append((iso_week(hi), hi, until))
    return Weeks(True, iso_week(lo) if lo else None, iso_week(hi) if hi else None, tuple(edges))

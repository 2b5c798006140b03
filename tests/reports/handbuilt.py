"""A small organisation built by hand through the real ingest and link paths, with its spec kept as
plain data so tests can compute every expected figure from the spec, independently of the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from agenttrail.events import Event, stable_id
from agenttrail.linking import PullRequestFacts, record_pull_requests
from agenttrail.store.ingest import Attribution, ingest
from agenttrail.store.org import add_engineer, add_project, add_team
from agenttrail.store.tables import llm_call

PAY, FIND = "github.com/acme/pay", "github.com/acme/find"
SONNET, OPUS, GPT = "claude-sonnet-4-5", "claude-opus-4-1", "gpt-5"
W19 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # Monday of ISO week 2026-W19
W20 = W19 + timedelta(days=7)

TEAMS = {"payments": ["ana@acme.test", "ben@acme.test", "eve@acme.test"], "search": ["cara@acme.test", "dan@acme.test"]}
PROJECTS = {"pay": ("payments", PAY), "find": ("search", FIND)}


@dataclass
class S:
    sid: str
    engineer: str
    project: str
    start: datetime
    minutes: int
    calls: list[tuple[str, float]]  # (model, cost)
    lines: int
    agent: str = "claude-code"
    commits: list[str] = field(default_factory=list)
    packages: list[tuple[str, str, str]] = field(default_factory=list)  # (ecosystem, name, version)
    commands: int = 3

    @property
    def team(self) -> str:
        return PROJECTS[self.project][0]

    @property
    def repo(self) -> str:
        return PROJECTS[self.project][1]

    @property
    def cost(self) -> float:
        return sum(c for _, c in self.calls)

    @property
    def files(self) -> list[tuple[str, int, int]]:
        """(change, added, removed) whose lines add up to `lines`."""
        a, r = self.lines // 3, self.lines // 5
        return [("created", a, 0), ("modified", self.lines - a - r, r)]

    @property
    def model(self) -> str:
        by: dict[str, float] = {}
        for m, c in self.calls:
            by[m] = by.get(m, 0.0) + c
        return max(sorted(by), key=lambda m: by[m])

    @property
    def week(self) -> str:
        y, w, _ = self.start.isocalendar()
        return f"{y}-W{w:02d}"


def h(day: datetime, hours: float) -> datetime:
    return day + timedelta(hours=hours)


SESSIONS = [
    S("p1", "ana@acme.test", "pay", h(W19, 0), 30, [(SONNET, 0.6), (SONNET, 0.4)], 99, commits=["sha-p1"]),
    S("p2", "ana@acme.test", "pay", h(W20, 1), 60, [(SONNET, 2.0)], 249, commits=["sha-p2"]),
    S(
        "p3",
        "ben@acme.test",
        "pay",
        h(W19, 2),
        30,
        [(SONNET, 1.5)],
        99,
        commits=["sha-p3"],
        packages=[("npm", "event-stream", "3.3.6")],
    ),
    S("p4", "ben@acme.test", "pay", h(W19, 26), 30, [(SONNET, 0.8)], 99, agent="codex"),
    S("p5", "ana@acme.test", "pay", h(W19, 27), 90, [(SONNET, 1.2)], 149, commits=["sha-p5a", "sha-p5b"]),
    S("p6", "ben@acme.test", "pay", h(W19, 28), 120, [(OPUS, 4.5), (SONNET, 0.5)], 4),
    S("p7", "ana@acme.test", "pay", h(W19, 50), 30, [(SONNET, 0.9)], 59, commits=["sha-p7"]),
    S(
        "f1",
        "cara@acme.test",
        "find",
        h(W19, 3),
        45,
        [(GPT, 3.0)],
        299,
        agent="codex",
        commits=["sha-f1"],
        packages=[("pypi", "requests", "2.32.3")],
    ),
    S("f2", "dan@acme.test", "find", h(W19, 4), 30, [(GPT, 2.0)], 99, commits=["sha-f2"]),
    S("f3", "cara@acme.test", "find", h(W20, 5), 30, [(SONNET, 1.0)], 49),
]

# Merged PRs: (repo, number, merged_at, commit shas). pay#4 had no agent session.
PRS = [
    (PAY, 1, h(W19, 30), ["sha-p1", "sha-p3"]),
    (PAY, 2, h(W20, 2), ["sha-p2", "sha-p5a"]),
    (PAY, 3, h(W20, 3), ["sha-p5b", "sha-p7"]),
    (PAY, 4, h(W20, 4), ["sha-human"]),
    (FIND, 10, h(W19, 40), ["sha-f1"]),
    (FIND, 11, h(W19, 41), ["sha-f2"]),
]
# Calls outside any session: (team, cost, day).
NO_SESSION = [("payments", 0.7, h(W19, 1)), ("search", 0.3, h(W20, 1))]


def session_events(s: S) -> list[Event]:
    t = s.start
    evs = [
        Event(s.sid, "session_start", t, {"repo": s.repo, "agent": s.agent, "branch": "main"}, stable_id(s.sid, 0)),
    ]
    for i in range(s.commands):
        evs.append(
            Event(s.sid, "exec", t + timedelta(seconds=i + 1), {"argv": ["make", f"t{i}"]}, stable_id(s.sid, "x", i))
        )
    for i, (eco, name, ver) in enumerate(s.packages):
        payload = {"ecosystem": eco, "name": name, "version_spec": ver, "manager": "npm", "argv": ["npm", "i", name]}
        evs.append(Event(s.sid, "package_install", t + timedelta(seconds=10 + i), payload, stable_id(s.sid, "p", i)))
    kinds = {"created": "file_create", "modified": "file_write"}
    for i, (change, added, removed) in enumerate(s.files):
        payload = {"source": "snapshot", "path": f"f{i}.py", "lines_added": added, "lines_removed": removed}
        evs.append(Event(s.sid, kinds[change], t + timedelta(minutes=1), payload, stable_id(s.sid, "f", i)))
    for i, (model, cost) in enumerate(s.calls):
        provider = "openai" if model.startswith("gpt") else "anthropic"
        record = {"provider": provider, "model": model, "cost_usd": cost, "input_tokens": 1000, "output_tokens": 100}
        evs.append(Event(s.sid, "llm_call", t + timedelta(minutes=2 + i), {"record": record}, stable_id(s.sid, "c", i)))
    for i, sha in enumerate(s.commits):
        evs.append(Event(s.sid, "commit", t + timedelta(minutes=20 + i), {"sha": sha}, stable_id(s.sid, "g", i)))
    evs.append(Event(s.sid, "session_end", t + timedelta(minutes=s.minutes), {"exit_code": 0}, stable_id(s.sid, 9)))
    return evs


@dataclass
class Org:
    engine: Engine
    team_ids: dict[str, int]
    project_ids: dict[str, int]
    engineer_ids: dict[str, int]


def build_org(engine: Engine) -> Org:
    team_ids = {t: add_team(engine, t).id for t in TEAMS}
    project_ids = {p: add_project(engine, p, team, repo).id for p, (team, repo) in PROJECTS.items()}
    engineer_ids = {e: add_engineer(engine, e, t).id for t, es in TEAMS.items() for e in es}
    for s in SESSIONS:
        who = Attribution(team_ids[s.team], project_ids[s.project], engineer_ids[s.engineer], s.engineer)
        ingest(engine, session_events(s), who)
    with engine.begin() as conn:
        for i, (team, cost, when) in enumerate(NO_SESSION):
            conn.execute(
                llm_call.insert().values(
                    call_id=f"nosession-{i}",
                    started_at=when.replace(tzinfo=None),
                    team_id=team_ids[team],
                    provider="anthropic",
                    model=SONNET,
                    cost_usd=cost,
                    input_tokens=500,
                    status="ok",
                )
            )
    record_pull_requests(
        engine,
        [PullRequestFacts(repo, n, f"PR {n}", when, shas[0], "merge", "demo", shas) for repo, n, when, shas in PRS],
    )
    return Org(engine, team_ids, project_ids, engineer_ids)


def by_sid() -> dict[str, S]:
    return {s.sid: s for s in SESSIONS}


def pr_sessions() -> dict[tuple[str, int], list[str]]:
    owner = {sha: s.sid for s in SESSIONS for sha in s.commits}
    return {(repo, n): sorted({owner[x] for x in shas if x in owner}) for repo, n, _, shas in PRS}


def pr_costs() -> dict[tuple[str, int], float]:
    """Each PR's cost: its sessions' costs, a session split equally over the PRs it reached."""
    links = pr_sessions()
    reach: dict[str, int] = {}
    for sids in links.values():
        for sid in sids:
            reach[sid] = reach.get(sid, 0) + 1
    sessions = by_sid()
    return {k: sum(sessions[sid].cost / reach[sid] for sid in sids) for k, sids in links.items()}

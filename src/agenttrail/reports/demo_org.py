"""A synthetic organisation for demos, the dashboard and benchmarks (`agenttrail seed-demo`).

Everything goes through the real paths: the directory through `store.org`, sessions, calls,
commands, files, packages and commits as events through `store.ingest.ingest` (in large batches),
and merged pull requests through `linking.record_pull_requests`. Calls made outside any session
(an IDE plugin on a team key) are written as the gateway's recorder writes them. A fixed seed gives
the same organisation, ids included, so seeding twice changes nothing.

Shape: teams of about eight engineers, two or three repos per team; about one engineer in five never
uses an agent; the rest run a few sessions a working day (fewer at weekends), with Claude Code,
Codex or Aider and their usual models. About three sessions in four that commit are merged within
three days, by merge, squash or rebase; a third of PRs had no agent at all. A few engineers spend far
more per changed line than their peers (so `report outliers` has something to find), and one agent
installs `event-stream` ten days before the end (so `report packages` has something to answer).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agenttrail.events import Event, stable_id
from agenttrail.linking import PullRequestFacts, record_pull_requests
from agenttrail.store.ingest import Attribution, ingest
from agenttrail.store.org import DirectoryError, add_engineer, add_project, add_team
from agenttrail.store.tables import engineer, llm_call, project, team

TEAM_NAMES = (
    "payments",
    "search",
    "platform",
    "mobile",
    "data",
    "infra",
    "growth",
    "billing",
    "identity",
    "checkout",
    "ml",
    "web",
)
SERVICES = ("api", "web", "worker", "sdk", "infra", "etl")
# model -> USD per million tokens: input, cache read, cache write, output
PRICES = {
    "claude-sonnet-4-5": (3.0, 0.3, 3.75, 15.0),
    "claude-opus-4-1": (15.0, 1.5, 18.75, 75.0),
    "claude-haiku-4-5": (1.0, 0.1, 1.25, 5.0),
    "gpt-5": (1.25, 0.125, 0.0, 10.0),
    "gpt-5-mini": (0.25, 0.025, 0.0, 2.0),
}
AGENTS = (  # agent, share, [(model, weight)]
    ("claude-code", 0.6, (("claude-sonnet-4-5", 0.75), ("claude-opus-4-1", 0.1), ("claude-haiku-4-5", 0.15))),
    ("codex", 0.3, (("gpt-5", 0.7), ("gpt-5-mini", 0.3))),
    ("aider", 0.1, (("claude-sonnet-4-5", 0.6), ("gpt-5", 0.4))),
)
PACKAGES = (
    ("npm", "lodash", "4.17.21", "npm"),
    ("npm", "express", "^4.19.2", "npm"),
    ("npm", "zod", "3.23.8", "pnpm"),
    ("pypi", "requests", "2.32.3", "pip"),
    ("pypi", "pydantic", ">=2", "uv"),
    ("pypi", "httpx", "0.28.1", "pip"),
    ("cargo", "serde", "1", "cargo"),
    ("npm", "left-pad", "1.3.0", "npm"),
)
COMMANDS = (["pytest", "-q"], ["npm", "test"], ["git", "status"], ["make", "lint"], ["rg", "TODO"], ["ls", "-la"])
HOSTS = (("140.82.112.3", 443), ("104.16.0.35", 443), ("151.101.1.69", 443), ("34.120.0.1", 443))


@dataclass(slots=True)
class DemoStats:
    teams: int = 0
    projects: int = 0
    engineers: int = 0
    sessions: int = 0
    events: int = 0
    calls: int = 0
    unattributed_calls: int = 0
    pull_requests: int = 0
    ingest_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class _Eng:
    id: int
    email: str
    team: str
    team_id: int
    repos: list[tuple[str, int]]  # (repo, project id)
    rate: float  # sessions per working day; 0 for engineers who never use agents
    waste: float  # spend multiplier per changed line (1 for most)


@dataclass(slots=True)
class _Pending:
    sid: str
    team: str
    shas: list[str]
    ended: datetime


@dataclass
class DemoOrg:
    engine: Engine
    engineers: int
    days: int
    seed: int = 42
    end: date = field(default_factory=lambda: datetime.now(UTC).date())
    batch_events: int = 20_000
    stats: DemoStats = field(default_factory=DemoStats)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._pending: dict[str, list[_Pending]] = defaultdict(list)
        self._pr_number: dict[str, int] = defaultdict(int)
        self._prs: list[PullRequestFacts] = []

    # ---- directory ------------------------------------------------------------------------------

    def _directory(self) -> list[_Eng]:
        n_teams = max(1, round(self.engineers / 8))
        names = [
            TEAM_NAMES[i % len(TEAM_NAMES)] + (f"-{i // len(TEAM_NAMES) + 1}" if i >= len(TEAM_NAMES) else "")
            for i in range(n_teams)
        ]
        with self.engine.connect() as conn:
            teams = dict(conn.execute(select(team.c.name, team.c.id)).all())
            projects = dict(conn.execute(select(project.c.name, project.c.id)).all())
            people = dict(conn.execute(select(engineer.c.email, engineer.c.id)).all())
        repos: dict[str, list[tuple[str, int]]] = {}
        for t in names:
            if t not in teams:
                teams[t] = add_team(self.engine, t).id
            repos[t] = []
            for svc in SERVICES[: 2 + self.rng.randrange(2)]:
                name = f"{t}-{svc}"
                repo = f"github.com/demo-org/{name}"
                if name not in projects:
                    projects[name] = add_project(self.engine, name, t, repo).id
                repos[t].append((repo, projects[name]))
        self.stats.teams, self.stats.projects = len(names), sum(len(v) for v in repos.values())
        out = []
        for i in range(self.engineers):
            t = names[i % len(names)]
            email = f"dev{i:05d}@demo-org.example"
            if email not in people:
                try:
                    people[email] = add_engineer(self.engine, email, t, name=f"Developer {i}").id
                except DirectoryError:  # added meanwhile by another seeding run
                    with self.engine.connect() as conn:
                        people[email] = conn.execute(
                            select(engineer.c.id).where(engineer.c.email == email)
                        ).scalar_one()
            rate = 0.0 if self.rng.random() < 0.2 else self.rng.lognormvariate(math.log(2.2), 0.5)
            waste = self.rng.uniform(8, 15) if self.rng.random() < 0.03 else self.rng.lognormvariate(0, 0.25)
            mine = repos[t]
            out.append(_Eng(people[email], email, t, teams[t], mine[: 1 + self.rng.randrange(len(mine))], rate, waste))
        self.stats.engineers = len(out)
        return out

    # ---- one session ----------------------------------------------------------------------------

    def _session(self, e: _Eng, day: date, k: int, plant_event_stream: bool) -> list[Event]:
        rng = self.rng
        sid = stable_id("demo", self.seed, e.email, day.isoformat(), k)
        ids = iter(range(1_000_000))

        def eid() -> str:
            return stable_id(sid, next(ids))

        start = datetime(day.year, day.month, day.day, 8, tzinfo=UTC) + timedelta(minutes=rng.randrange(10 * 60))
        minutes = max(3, int(rng.lognormvariate(math.log(25), 0.7)))
        end = start + timedelta(minutes=minutes)
        repo, project_id = rng.choice(e.repos)
        agent, models = _pick_agent(rng)
        t = start

        def tick() -> datetime:
            nonlocal t
            t = min(end, t + timedelta(seconds=rng.randrange(5, 90)))
            return t

        start_payload = {
            "engineer": e.email,
            "team_id": e.team_id,
            "project_id": project_id,
            "engineer_id": e.id,
            "repo": repo,
            "branch": f"feat/{sid[:6]}",
            "agent": agent,
            "command": [agent],
            "host": f"laptop-{e.id}",
            "source": "demo",
        }
        evs = [Event(sid, "session_start", start, start_payload, eid())]
        lines = max(1, int(rng.lognormvariate(math.log(60), 1.0)))
        n_calls = 1 + min(12, int(rng.expovariate(1 / 3)))
        # Spend grows with the work, times the engineer's habit: waste > 1 spends more per line.
        tokens_per_call = 2_000 + int(lines * 250 * e.waste / n_calls)
        for _ in range(n_calls):
            model = _pick(rng, models)
            inp = int(tokens_per_call * rng.uniform(0.2, 0.5))
            cread = int(tokens_per_call * rng.uniform(0.3, 1.5))
            cwrite = int(tokens_per_call * rng.uniform(0.0, 0.2)) if model.startswith("claude") else 0
            out = int(rng.uniform(150, 2500) * max(1.0, e.waste / 3))
            p = PRICES[model]
            cost = (inp * p[0] + cread * p[1] + cwrite * p[2] + out * p[3]) / 1e6
            record = {
                "provider": "anthropic" if model.startswith("claude") else "openai",
                "model": model,
                "input_tokens": inp,
                "cache_read_tokens": cread,
                "cache_write_tokens": cwrite,
                "output_tokens": out,
                "cost_usd": round(cost, 9),
                "cost_nanos": int(cost * 1e9),
                "team_id": e.team_id,
                "project_id": project_id,
                "engineer_id": e.id,
                "source": "demo",
                "price_source": "demo price table",
            }
            evs.append(Event(sid, "llm_call", tick(), {"record": record}, eid()))
        for _ in range(1 + rng.randrange(2)):
            evs.append(
                Event(sid, "prompt", tick(), {"text": f"Please work on {repo} task {rng.randrange(1000)}"}, eid())
            )
            evs.append(Event(sid, "response", tick(), {"text": "Done: changed the code and ran the tests."}, eid()))
        for _ in range(1 + rng.randrange(3)):
            evs.append(Event(sid, "tool_call", tick(), {"name": rng.choice(("Bash", "Edit", "Read"))}, eid()))
        for _ in range(2 + rng.randrange(5)):
            evs.append(Event(sid, "exec", tick(), {"argv": list(rng.choice(COMMANDS)), "cwd": "/work"}, eid()))
        for _ in range(rng.randrange(3)):
            evs.append(Event(sid, "file_read", tick(), {"path": f"src/m{rng.randrange(50)}.py"}, eid()))
        if plant_event_stream or rng.random() < 0.05:
            eco, name, ver, mgr = (
                ("npm", "event-stream", "3.3.6", "npm") if plant_event_stream else rng.choice(PACKAGES)
            )
            argv = [mgr, "install", f"{name}@{ver}"]
            payload = {"ecosystem": eco, "name": name, "version_spec": ver, "manager": mgr, "argv": argv}
            evs.append(Event(sid, "exec", tick(), {"argv": argv, "cwd": "/work"}, eid()))
            evs.append(Event(sid, "package_install", t, payload, eid()))
        if rng.random() < 0.3:
            host, port = rng.choice(HOSTS)
            evs.append(Event(sid, "net_connect", tick(), {"address": host, "port": port, "protocol": "tcp"}, eid()))
        n_files = 1 + min(6, int(rng.expovariate(1 / 1.5)))
        left = lines
        for i in range(n_files):
            added = left if i == n_files - 1 else rng.randrange(0, left + 1)
            left -= added
            removed = added // 4
            kind = "file_create" if rng.random() < 0.3 else "file_write"
            change: dict[str, Any] = {
                "source": "snapshot",
                "path": f"src/{repo.rsplit('/', 1)[1]}/f{rng.randrange(200)}.py",
                "lines_added": added,
                "lines_removed": removed,
                "diff": f"@@ -1,{removed} +1,{added} @@\n+# change {sid[:8]}\n",
            }
            evs.append(Event(sid, kind, tick(), change, eid()))
        if rng.random() < 0.65:
            shas = [hashlib.sha1(f"{sid}:{i}".encode()).hexdigest() for i in range(1 + rng.randrange(2))]
            for sha in shas:
                msg = f"Change {sha[:7]}\n\nAgent-Session: {sid}"
                evs.append(Event(sid, "commit", tick(), {"sha": sha, "message": msg, "repo": repo}, eid()))
            if rng.random() < 0.75:
                self._pending[repo].append(_Pending(sid, e.team, shas, end))
        evs.append(Event(sid, "session_end", end, {"exit_code": 0 if rng.random() < 0.95 else 1}, eid()))
        self.stats.calls += n_calls
        return evs

    # ---- pull requests --------------------------------------------------------------------------

    def _merge_prs(self, day: date, final: bool = False) -> None:
        """Close the pending sessions of each repo into PRs, one to three sessions each, merged after them."""
        rng = self.rng
        cutoff = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=rng.randrange(0, 3))
        for repo, pending in sorted(self._pending.items()):
            ready = [p for p in pending if final or p.ended < cutoff]
            self._pending[repo] = [p for p in pending if p not in ready]
            while ready:
                take = 1 + rng.randrange(3)
                group, ready = ready[:take], ready[take:]
                self._add_pr(repo, group)
            if rng.random() < 0.35:
                self._add_pr(repo, [], when=datetime(day.year, day.month, day.day, 16, tzinfo=UTC))

    def _add_pr(self, repo: str, group: list[_Pending], when: datetime | None = None) -> None:
        rng = self.rng
        self._pr_number[repo] += 1
        n = self._pr_number[repo]
        merged = when or max(p.ended for p in group) + timedelta(hours=rng.uniform(0.5, 30))
        kind = _pick(rng, (("merge", 0.5), ("squash", 0.35), ("rebase", 0.15)))
        head = hashlib.sha1(f"{repo}#{n}".encode()).hexdigest()
        shas = [s for p in group for s in p.shas]
        if kind == "squash":
            # GitHub copies the squashed messages, trailers included, into the squash commit's body.
            facts = PullRequestFacts(
                repo, n, f"Change set {n}", merged, head, kind, "demo", [head], [p.sid for p in group]
            )
        else:
            facts = PullRequestFacts(repo, n, f"Change set {n}", merged, head, kind, "demo", [head, *shas], [])
        self._prs.append(facts)

    # ---- the run --------------------------------------------------------------------------------

    def _days(self) -> list[date]:
        return [self.end - timedelta(days=self.days - 1 - i) for i in range(self.days)]

    def events(self, progress: Callable[[int], None] | None = None) -> Iterator[list[Event]]:
        """Batches of events, day by day; PRs close as the days pass."""
        people = self._directory()
        active = [e for e in people if e.rate > 0]
        plant_day = self.end - timedelta(days=10)
        batch: list[Event] = []
        for day in self._days():
            weekend = day.weekday() >= 5
            for e in active:
                rate = e.rate * (0.15 if weekend else 1.0)
                n = _poisson(self.rng, rate)
                for k in range(n):
                    plant = day == plant_day and e is active[0] and k == 0
                    batch.extend(self._session(e, day, k, plant))
                    self.stats.sessions += 1
                if day == plant_day and e is active[0] and n == 0:
                    batch.extend(self._session(e, day, 0, True))
                    self.stats.sessions += 1
                if len(batch) >= self.batch_events:
                    yield batch
                    batch = []
            self._merge_prs(day)
            if progress:
                progress(1)
        self._merge_prs(self.end, final=True)
        if batch:
            yield batch

    def unattributed_calls(self) -> list[dict[str, Any]]:
        """Calls outside any session, about 8% of spend: what the gateway's recorder writes."""
        rng = self.rng
        with self.engine.connect() as conn:
            keys = conn.execute(select(project.c.id, project.c.team_id)).all()
        rows = []
        for day in self._days():
            for pid, tid in keys:
                for i in range(rng.randrange(3)):
                    inp, out = rng.randrange(1000, 20000), rng.randrange(100, 1500)
                    p = PRICES["claude-sonnet-4-5"]
                    cost = (inp * p[0] + out * p[3]) / 1e6
                    when = datetime(day.year, day.month, day.day, 9 + i, tzinfo=UTC).replace(tzinfo=None)
                    rows.append(
                        {
                            "call_id": stable_id("demo-call", self.seed, day.isoformat(), pid, i),
                            "started_at": when,
                            "team_id": tid,
                            "project_id": pid,
                            "provider": "anthropic",
                            "model": "claude-sonnet-4-5",
                            "input_tokens": inp,
                            "output_tokens": out,
                            "cost_usd": round(cost, 9),
                            "cost_nanos": int(cost * 1e9),
                            "status": "ok",
                            "source": "gateway",
                        }
                    )
        return rows

    def run(self, progress: Callable[[int], None] | None = None) -> DemoStats:
        for batch in self.events(progress):
            t0 = time.perf_counter()
            result = ingest(self.engine, batch, Attribution())
            self.stats.ingest_seconds += time.perf_counter() - t0
            self.stats.events += result.accepted + result.duplicates
        rows = self.unattributed_calls()
        if rows:
            with self.engine.begin() as conn:
                insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
                for i in range(0, len(rows), 5000):
                    conn.execute(insert(llm_call).on_conflict_do_nothing(), rows[i : i + 5000])
        self.stats.unattributed_calls = len(rows)
        record_pull_requests(self.engine, self._prs)
        self.stats.pull_requests = len(self._prs)
        return self.stats


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    x = rng.random() * sum(w for _, w in weighted)
    for name, w in weighted:
        x -= w
        if x <= 0:
            return name
    return weighted[-1][0]


def _pick_agent(rng: random.Random) -> tuple[str, tuple[tuple[str, float], ...]]:
    x = rng.random()
    for agent, share, models in AGENTS:
        x -= share
        if x <= 0:
            return agent, models
    return AGENTS[-1][0], AGENTS[-1][2]


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: lam is a few sessions a day, so the loop is short.
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1

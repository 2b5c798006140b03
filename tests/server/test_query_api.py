"""The query API: reports as JSON (the CLI's shape), SQL and exports, scoped by the API token's role;
content reads are audited."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from agenttrail.clock import FixedClock
from agenttrail.config import load_settings
from agenttrail.query.tokens import create_token
from agenttrail.reports.base import Filters
from agenttrail.reports.registry import run_report
from agenttrail.server import query
from agenttrail.server.app import build_services, create_app
from agenttrail.store.database import open_engine
from reports.handbuilt import TEAMS, Org, build_org

NOW = datetime(2026, 5, 20, tzinfo=UTC)


class Api:
    def __init__(self, client: TestClient, org: Org, tokens: dict[str, str]) -> None:
        self.client, self.org, self.tokens = client, org, tokens

    def get(self, path: str, role: str | None, **params: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return self.client.get(path, params=params, headers=headers)

    def sql(self, role: str, sql: str) -> httpx.Response:
        return self.client.post(
            "/api/v1/sql", content=orjson.dumps({"sql": sql}), headers={"authorization": f"Bearer {self.tokens[role]}"}
        )

    def audit(self) -> list[tuple[str, str, str]]:
        with self.org.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT actor, action, detail FROM audit_log ORDER BY id"))]


@pytest.fixture
def api(db_url: str, home: str) -> Iterator[Api]:
    engine = open_engine(db_url)
    org = build_org(engine)
    tokens = {
        role: create_token(engine, role=role, name=role, now=NOW, team_name="payments" if role == "lead" else None)[0]
        for role in ("admin", "finance", "security", "lead")
    }
    settings = load_settings(env={"AGENTTRAIL_HOME": home}, db=db_url)
    svc = build_services(settings, engine=engine, clock=FixedClock(NOW))
    app = create_app(settings, services=svc, extra_routes=query.install(svc))
    with TestClient(app) as client:
        yield Api(client, org, tokens)


def test_tokens_are_required(api: Api) -> None:
    assert api.get("/api/v1/reports/shipped", None).status_code == 401
    api.tokens["bogus"] = "at-api-not-a-token"
    r = api.get("/api/v1/reports/shipped", "bogus")
    assert r.status_code == 401 and "unknown or revoked" in r.json()["error"]["message"]


def test_reports_as_json_match_the_cli_shape(api: Api) -> None:
    r = api.get("/api/v1/reports/shipped", "finance")
    assert r.status_code == 200
    assert r.json() == orjson.loads(orjson.dumps(run_report(api.org.engine, "shipped", Filters()).to_json()))
    names = [x["name"] for x in api.get("/api/v1/reports", "finance").json()["reports"]]
    assert names == ["adoption", "spend", "shipped", "outliers", "models", "packages"]
    spend = api.get("/api/v1/reports/spend", "finance", by="model", since="2026-05-01", until="2026-05-31")
    assert {row["model"] for row in spend.json()["sections"]["by_model"]} >= {"gpt-5", "claude-opus-4-1"}
    csv_r = api.get("/api/v1/reports/shipped", "finance", format="csv", section="by_repo")
    assert csv_r.text.splitlines()[0].startswith("repo,merged_prs")
    pkgs = api.get("/api/v1/reports/packages", "finance", name="event-stream", since="90d")
    assert [i["engineer"] for i in pkgs.json()["sections"]["installs"]] == ["ben@acme.test"]
    bad = api.get("/api/v1/reports/spend", "finance", since="yesterday-ish")
    assert bad.status_code == 400 and "cannot read" in bad.json()["error"]["message"]
    for path, params in (
        ("/api/v1/reports/spend", {"team": "\x00"}),  # a 500 on PostgreSQL, which refuses NUL
        ("/api/v1/reports/packages", {"name": "left\x00pad"}),
        ("/api/v1/export", {"format": "csv", "repo": "\x00"}),
    ):
        bad = api.get(path, "finance", **params)
        assert bad.status_code == 400 and "NUL" in bad.json()["error"]["message"], path
    for path, params in (
        ("/api/v1/reports/spend", {"team": "paymnets"}),
        ("/api/v1/export", {"format": "csv", "team": "paymnets"}),
        ("/api/v1/reports/shipped", {"since": "2026-05-30", "until": "2026-05-01"}),
    ):
        bad = api.get(path, "finance", **params)
        message = bad.json()["error"]["message"]
        assert bad.status_code == 400 and ("no team 'paymnets'" in message or "period is empty" in message), path


def test_lead_sees_one_team(api: Api) -> None:
    r = api.get("/api/v1/reports/adoption", "lead")
    week = r.json()["sections"]["by_week"][0]
    assert r.json()["filters"]["team"] == "payments" and week["roster"] == len(TEAMS["payments"])
    assert api.get("/api/v1/reports/adoption", "lead", team="search").status_code == 403
    assert api.sql("lead", "SELECT 1").status_code == 403


def test_finance_reads_aggregates_never_content(api: Api) -> None:
    ok = api.sql("finance", "SELECT engineer, SUM(cost_usd) AS c FROM sessions GROUP BY engineer")
    assert ok.status_code == 200 and len(ok.json()["rows"]) == 4
    for q in ("SELECT payload FROM events", "SELECT diff FROM file_changes", "SELECT message FROM commits"):
        r = api.sql("finance", q)
        assert r.status_code == 400, q
        assert "documented views" in r.json()["error"]["message"]
    assert api.get("/api/v1/export", "finance", format="security").status_code == 403
    focus = api.get("/api/v1/export", "finance", format="focus")
    assert focus.status_code == 200 and "BilledCost" in focus.text.splitlines()[0]
    assert api.audit() == []


def test_security_reads_content_and_is_audited(api: Api) -> None:
    r = api.sql("security", "SELECT kind, COUNT(*) AS n FROM events GROUP BY kind")
    assert r.status_code == 200 and "exec" in {row["kind"] for row in r.json()["rows"]}
    exp = api.get("/api/v1/export", "security", format="security", team="search")
    lines = exp.text.splitlines()
    assert exp.status_code == 200 and len(lines) == 3
    assert {orjson.loads(x)["team"] for x in lines} == {"search"}
    trail = api.audit()
    assert [(a, act) for a, act, _ in trail] == [
        ("token:" + api.tokens["security"][:13] + "… (security)", "sql"),
        ("token:" + api.tokens["security"][:13] + "… (security)", "export"),
    ]
    assert "events" in trail[0][2] and '"team":"search"' in trail[1][2]


def test_sql_refusals_are_clear_and_exports_stream(api: Api) -> None:
    r = api.sql("admin", "DELETE FROM sessions")
    assert r.status_code == 400 and "refused" in r.json()["error"]["message"]
    calls = api.get("/api/v1/export", "admin", format="csv", what="calls")
    rows = list(csv.DictReader(io.StringIO(calls.text)))
    assert len(rows) == 14 and calls.headers["x-agenttrail-records"] == "14"
    nd = api.get("/api/v1/export", "admin", format="json", repo="github.com/acme/find")
    assert len(nd.text.splitlines()) == 3


def test_client_mistakes_in_parameters_are_400s(api: Api) -> None:
    for since in ("9999-12-31", "100000000000d"):
        r = api.get("/api/v1/reports/spend", "finance", since=since)
        assert r.status_code == 400 and "out of range" in r.json()["error"]["message"]
    big = orjson.dumps({"sql": "SELECT 1", "pad": "x" * (2 * 1024 * 1024)})
    r = api.client.post("/api/v1/sql", content=big, headers={"authorization": f"Bearer {api.tokens['finance']}"})
    assert r.status_code == 413 and "larger than 1048576 bytes" in r.json()["error"]["message"]
    for threshold in ("nan", "inf", "abc"):
        r = api.get("/api/v1/reports/outliers", "finance", threshold=threshold)
        assert r.status_code == 400 and r.json()["error"]["message"] == "threshold must be a number, e.g. 3.5"
    r = api.get("/api/v1/export", "finance", format="csv", until="9999-12-31")
    assert r.status_code == 400 and "out of range" in r.json()["error"]["message"]
    for body in ({"sql": "SELECT 1", "timeout_s": 0}, {"sql": "SELECT 1", "timeout_s": "nan"}):
        r = api.client.post(
            "/api/v1/sql", content=orjson.dumps(body), headers={"authorization": f"Bearer {api.tokens['finance']}"}
        )
        assert r.status_code == 400 and "positive number of seconds" in r.json()["error"]["message"]

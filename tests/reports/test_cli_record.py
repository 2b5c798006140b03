"""The record's commands as a user runs them: report, export, link-prs, token; one clear line on mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agenttrail.store.database import open_engine

from .handbuilt import build_org


def at(*args: str, db: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [sys.executable, "-m", "agenttrail", *args, "--db", db], capture_output=True, text=True, timeout=300
    )
    if check and p.returncode != 0:
        raise AssertionError(f"agenttrail {' '.join(args)} failed: {p.stderr}")
    return p


def test_reports_exports_and_tokens(sqlite_url: str, home: str, tmp_path: Path) -> None:
    build_org(open_engine(sqlite_url))
    shipped = json.loads(at("report", "shipped", "--format", "json", db=sqlite_url).stdout)
    assert shipped["report"] == "shipped" and shipped["sections"]["overall"][0]["median_usd_per_pr"] > 0
    csv_out = at("report", "models", "--format", "csv", "--repo", "github.com/acme/find", db=sqlite_url).stdout
    assert csv_out.splitlines()[0].startswith("repo,model,sessions") and len(csv_out.splitlines()) == 3
    table = at("report", "packages", "--name", "event-stream", "--since", "2026-01-01", db=sqlite_url).stdout
    assert "Package installs" in table and "event-stream: 1 install(s)" in table
    spend = json.loads(at("report", "spend", "--by", "agent", "-f", "json", db=sqlite_url).stdout)
    assert {r["agent"] for r in spend["sections"]["by_agent"]} >= {"claude-code", "codex"}

    focus = tmp_path / "focus.csv"
    p = at("export", "--format", "focus", "-o", str(focus), db=sqlite_url)
    assert focus.read_text().startswith("AvailabilityZone,BilledCost") and "exported" in p.stderr
    sec = at("export", "--format", "security", "--team", "search", db=sqlite_url).stdout
    assert len(sec.splitlines()) == 3
    calls = at("export", "--format", "json", "--what", "calls", db=sqlite_url).stdout
    assert len(calls.splitlines()) == 14

    token = at("token", "create", "--role", "finance", "--name", "cfo", db=sqlite_url).stdout.strip()
    assert token.startswith("at-api-")
    listed = json.loads(at("token", "list", "--format", "json", db=sqlite_url).stdout)
    assert listed[0]["role"] == "finance" and token not in json.dumps(listed)
    at("token", "revoke", listed[0]["prefix"], db=sqlite_url)
    assert json.loads(at("token", "list", "-f", "json", db=sqlite_url).stdout)[0]["status"] == "revoked"


def _git_repo(path: Path, commit: bool = False) -> Path:
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(path)], check=True)
    if commit:
        subprocess.run(
            [
                "git",
                "-C",
                str(path),
                "-c",
                "user.email=a@b.c",
                "-c",
                "user.name=A",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "x",
            ],
            check=True,
        )
    return path


def test_mistakes_get_one_clear_line(sqlite_url: str, home: str, tmp_path: Path) -> None:
    cases = [
        (("report", "outliers", "--since", "last tuesday"), "cannot read"),
        (("report", "shipped", "--section", "nope"), "no section"),
        (("report", "models", "--format", "xml"), "--format must be one of"),
        (("export", "--format", "pdf"), "--format must be one of"),
        (("export", "--format", "csv", "--what", "teams"), "cannot export"),
        (("token", "create", "--role", "boss"), "--role must be one of"),
        (("token", "create", "--role", "lead"), "needs --team"),
        (("link-prs", str(tmp_path / "missing")), "is not a directory"),
        (("link-prs", str(tmp_path)), "not a git repository"),
        (("link-prs", str(_git_repo(tmp_path / "empty"))), "has no commits yet"),
        (("link-prs", str(_git_repo(tmp_path / "one", commit=True))), "no branch 'main' in"),
        (("link-prs", str(tmp_path / "one")), "(it has trunk)"),
        (("report", "spend", "--team", "payments"), "no team 'payments': the directory has no teams yet"),
        (("report", "adoption", "--since", "2026-05-30", "--until", "2026-05-01"), "the period is empty"),
        (("export", "--format", "focus", "--since", "2026-05-30", "--until", "2026-05-01"), "the period is empty"),
        (("report", "reconcile", "--since", "2026-05-30", "--until", "2026-05-01"), "the period is empty"),
    ]
    for args, needle in cases:
        p = at(*args, db=sqlite_url, check=False)
        assert p.returncode != 0, args
        assert needle in " ".join(p.stderr.split()), (args, p.stderr)
        assert "Traceback" not in p.stderr


def test_a_misspelt_team_is_named_not_answered_with_an_empty_report(sqlite_url: str, home: str, tmp_path: Path) -> None:
    build_org(open_engine(sqlite_url))
    out = tmp_path / "sessions.csv"
    for args in (
        ("report", "shipped", "--team", "paymnets"),
        ("export", "--format", "csv", "-o", str(out), "--team", "paymnets"),
    ):
        p = at(*args, db=sqlite_url, check=False)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert "no team 'paymnets'; the teams are: " in p.stderr and "payments" in p.stderr
    assert not out.exists()
    # A repo written as GitHub shows it, not as sessions name it: said, with the likely one.
    p = at("report", "models", "--repo", "acme/find", db=sqlite_url, check=False)
    assert p.returncode == 1 and "did you mean github.com/acme/find?" in " ".join(p.stderr.split()), p.stderr

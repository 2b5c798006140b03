"""The admin commands as a user runs them: clear output, clear errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def at(*args: str, db: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [sys.executable, "-m", "agenttrail", *args, "--db", db], capture_output=True, text=True, timeout=120
    )
    if check and p.returncode != 0:
        raise AssertionError(f"agenttrail {' '.join(args)} failed: {p.stderr}")
    return p


def test_directory_keys_and_sql(db_url: str, home: str) -> None:
    at("team", "add", "payments", db=db_url)
    at("project", "add", "checkout", "--team", "payments", "--repo", "github.com/acme/checkout", db=db_url)
    at("engineer", "add", "Ana@Example.com", "--team", "payments", db=db_url)
    out = at("key", "create", "--team", "payments", "--project", "checkout", "--engineer", "ana@example.com", db=db_url)
    key = out.stdout.strip().splitlines()[0]
    assert key.startswith("sk-at-") and len(key) > 30
    listed = at("key", "list", "--format", "json", db=db_url).stdout
    (entry,) = json.loads(listed)
    assert entry["prefix"] == key[:12] and key not in listed
    assert (entry["project"], entry["engineer"], entry["status"]) == ("checkout", "ana@example.com", "active")
    rows = json.loads(at("sql", "SELECT engineer, team FROM engineers", "--format", "json", db=db_url).stdout)
    assert rows == [{"engineer": "ana@example.com", "team": "payments"}]
    csv_out = at("sql", "SELECT project, team, repo FROM projects", "--format", "csv", db=db_url).stdout
    assert csv_out.splitlines() == ["project,team,repo", "checkout,payments,github.com/acme/checkout"]
    at("key", "revoke", key[:12], db=db_url)
    assert json.loads(at("key", "list", "-f", "json", db=db_url).stdout)[0]["status"] == "revoked"


def test_a_new_key_or_token_is_all_that_stdout_holds(db_url: str, home: str) -> None:
    # `export OPENAI_API_KEY=$(agenttrail key create …)` took the note after the key too ("sk-at-… key
    # sk-at-AbC… for team payments. It is shown only now: …"): the variable held no usable key.
    at("team", "add", "payments", db=db_url)
    out = at("key", "create", "--team", "payments", db=db_url)
    assert out.stdout.startswith("sk-at-") and out.stdout.strip().split() == [out.stdout.strip()]
    assert "shown only now" in out.stderr
    out = at("token", "create", "--role", "finance", db=db_url)
    assert len(out.stdout.split()) == 1 and "shown only this once" in out.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("project", "add", "x", "--team", "ghosts"), 'no team named "ghosts"'),
        (("key", "create", "--team", "ghosts"), 'no team named "ghosts"'),
        (("engineer", "add", "not-an-email", "--team", "payments"), "not an email"),
        (("sql", "DELETE FROM llm_calls"), "refused"),
        (("sql", "SELECT * FROM virtual_key"), "documented views"),
        (("report", "spend", "--by", "planet"), "--by must be one of"),
        (("report", "spend", "--since", "yesterday-ish"), "cannot read"),
        (("key", "revoke", "sk-at-nothing"), "no key matches"),
    ],
)
def test_mistakes_get_one_clear_line(db_url: str, home: str, args: tuple[str, ...], needle: str) -> None:
    at("team", "add", "payments", db=db_url)
    p = at(*args, db=db_url, check=False)
    assert p.returncode != 0
    assert needle in p.stderr.replace("\n", " ")
    assert "Traceback" not in p.stderr


def test_duplicate_team(db_url: str, home: str) -> None:
    at("team", "add", "payments", db=db_url)
    p = at("team", "add", "payments", db=db_url, check=False)
    assert p.returncode == 1 and "already exists" in p.stderr


def test_names_with_brackets_and_a_config_file(tmp_path, home: str) -> None:  # type: ignore[no-untyped-def]
    # The database named only in agenttrail.toml: every list command reads it (they ignored --config).
    db = f"sqlite:///{tmp_path / 'from-config.db'}"
    cfg = tmp_path / "agenttrail.toml"
    cfg.write_text(f'database_url = "{db}"\n')

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agenttrail", *args, "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert "[red]ops" in cli("team", "add", "[red]ops").stdout
    again = cli("team", "add", "[red]ops")
    assert again.returncode == 1 and "Traceback" not in again.stderr and '"[red]ops" already exists' in again.stderr
    missing = cli("project", "add", "x", "--team", "[/]")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr and '"[/]"' in missing.stderr
    assert cli("project", "add", "web[1]", "--team", "[red]ops").returncode == 0
    assert cli("engineer", "add", "ana@example.com", "--team", "[red]ops").returncode == 0
    assert "[red]ops" in cli("team", "list").stdout
    assert "web[1]" in cli("project", "list").stdout
    assert "ana@example.com" in cli("engineer", "list").stdout
    key = cli("key", "create", "--team", "[red]ops").stdout.splitlines()[0]
    assert key[:12] in cli("key", "list", "-f", "json").stdout
    assert cli("key", "revoke", key[:12]).returncode == 0


@pytest.mark.parametrize("command", [["sessions", "-n"], ["alerts", "--limit"]])
def test_a_limit_below_one_is_refused_before_the_database_sees_it(db_url: str, home: str, command: list[str]) -> None:
    # PostgreSQL refused LIMIT -1 with a DataError traceback; SQLite read it as no limit at all.
    p = at(*command, "-1", db=db_url, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "Invalid value for" in p.stderr


def test_an_expiry_in_the_past_or_off_the_calendar_is_refused(sqlite_url: str, home: str) -> None:
    at("team", "add", "payments", db=sqlite_url)
    for value, message in (("2001-01-01", "is already past"), ("100000000000d", "--expires takes a date")):
        p = at("key", "create", "--team", "payments", "--expires", value, db=sqlite_url, check=False)
        assert p.returncode == 1 and "Traceback" not in p.stderr and message in p.stderr, p.stderr
    assert at("key", "create", "--team", "payments", "--expires", "30d", db=sqlite_url).stdout.startswith("sk-at-")


def test_a_refused_query_says_what_to_do_once(db_url: str, home: str) -> None:
    empty = at("sql", "   ", db=db_url, check=False)
    assert empty.returncode == 1 and " ".join(empty.stderr.split()).count("package_installs") == 1  # listed twice
    unknown = at("sql", "SELECT * FROM sesions", db=db_url, check=False)
    assert "Readable views: teams" in " ".join(unknown.stderr.split())  # the list helps here

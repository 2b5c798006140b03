"""The security export: one NDJSON record per session with everything the agent did, and no secret
that was in a prompt, a response, a tool call, a command or a diff."""

from __future__ import annotations

import base64
import io
import random
import string
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import Engine

from agenttrail.events import Event, stable_id
from agenttrail.exports.security import write_security
from agenttrail.reports.base import Filters
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import Attribution, ingest

ALNUM = string.ascii_letters + string.digits
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def _r(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def corpus(seed: int = 7) -> dict[str, str]:
    """Realistically shaped credentials with random bodies (none is real)."""
    rng = random.Random(seed)
    pem_body = base64.b64encode(rng.randbytes(600)).decode()
    pem_lines = "\n".join(pem_body[i : i + 64] for i in range(0, len(pem_body), 64))
    return {
        "aws_access_key": "AKIA" + _r(rng, 16, string.ascii_uppercase + "234567"),
        "aws_secret": _r(rng, 40, ALNUM + "/+"),
        "github_pat": "ghp_" + _r(rng, 36),
        "github_fine": "github_pat_" + _r(rng, 22) + "_" + _r(rng, 59),
        "anthropic": "sk-ant-api03-" + _r(rng, 93, ALNUM + "-_") + "AA",
        "openai": "sk-proj-" + _r(rng, 74, ALNUM + "-_") + "T3BlbkFJ" + _r(rng, 74, ALNUM + "-_"),
        "slack_bot": f"xoxb-{_r(rng, 12, string.digits)}-{_r(rng, 13, string.digits)}-{_r(rng, 24)}",
        "slack_webhook": f"https://hooks.slack.com/services/T{_r(rng, 8, string.ascii_uppercase)}/"
        f"B{_r(rng, 10, string.ascii_uppercase)}/{_r(rng, 24)}",
        "private_key": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{pem_lines}\n-----END OPENSSH PRIVATE KEY-----",
    }


def _needles(secrets: dict[str, str]) -> dict[str, str]:
    """The part of each secret that must not survive (a private key's body, not its header)."""
    out = dict(secrets)
    out["private_key"] = secrets["private_key"].split("\n")[3]
    return out


def _session(engine: Engine, sid: str, s: dict[str, str]) -> None:
    t = T0
    evs = [
        Event(sid, "session_start", t, {"repo": "github.com/acme/pay", "agent": "claude-code", "command": ["claude"]}),
        Event(sid, "prompt", t + timedelta(seconds=1), {"text": f"deploy with AWS key {s['aws_access_key']} please"}),
        Event(
            sid,
            "prompt",
            t + timedelta(seconds=2),
            {"text": f"here is my key:\n{s['private_key']}\nand GH token {s['github_pat']}"},
        ),
        Event(
            sid,
            "response",
            t + timedelta(seconds=3),
            {"text": f"I will export ANTHROPIC_API_KEY={s['anthropic']} for you"},
        ),
        Event(
            sid,
            "tool_call",
            t + timedelta(seconds=4),
            {"name": "Bash", "input": {"command": f"curl -H 'Authorization: Bearer {s['openai']}' api.openai.com"}},
        ),
        Event(
            sid,
            "exec",
            t + timedelta(seconds=5),
            {"argv": ["aws", "configure", "set", "aws_secret_access_key", s["aws_secret"]], "cwd": "/w"},
        ),
        Event(sid, "exec", t + timedelta(seconds=6), {"argv": ["curl", "-X", "POST", s["slack_webhook"]]}),
        Event(
            sid, "exec", t + timedelta(seconds=7), {"argv": ["gh", "auth", "login", "--with-token", s["github_fine"]]}
        ),
        Event(sid, "tool_result", t + timedelta(seconds=8), {"text": f"SLACK_BOT_TOKEN={s['slack_bot']}"}),
        Event(
            sid,
            "file_create",
            t + timedelta(seconds=9),
            {
                "source": "snapshot",
                "path": ".env",
                "lines_added": 2,
                "diff": f"+OPENAI_API_KEY={s['openai']}\n+GITHUB_TOKEN={s['github_pat']}\n",
            },
        ),
        Event(
            sid, "net_connect", t + timedelta(seconds=10), {"address": "140.82.112.3", "port": 443, "protocol": "tcp"}
        ),
        Event(
            sid,
            "package_install",
            t + timedelta(seconds=11),
            {"ecosystem": "npm", "name": "left-pad", "version_spec": "1.3.0", "manager": "npm", "argv": ["npm", "i"]},
        ),
        Event(sid, "commit", t + timedelta(seconds=12), {"sha": "abc123", "message": "add env"}),
        Event(sid, "session_end", t + timedelta(minutes=5), {"exit_code": 0}),
    ]
    for i, e in enumerate(evs):
        e.event_id = stable_id(sid, i)
    ingest(engine, evs, Attribution(engineer="ana@acme.test"))


def test_security_export_holds_everything_but_the_secrets(db_url: str) -> None:
    engine = open_engine(db_url)
    secrets = corpus()
    _session(engine, "s-leaky", secrets)
    _session(engine, "s-second", corpus(seed=8))
    buf = io.StringIO()
    n = write_security(engine, Filters(), buf)
    out = buf.getvalue()
    assert n == 2 and len(out.splitlines()) == 2

    for name, needle in {**_needles(secrets), **{f"2:{k}": v for k, v in _needles(corpus(8)).items()}}.items():
        assert needle not in out, f"{name} leaked into the security export"
    assert "[REDACTED:" in out

    rec = next(r for r in map(orjson.loads, out.splitlines()) if r["session_id"] == "s-leaky")
    assert rec["engineer"] == "ana@acme.test" and rec["repo"] == "github.com/acme/pay"
    assert [p["text"][:13] for p in rec["prompts"]] == ["deploy with A", "here is my ke"]
    assert len(rec["responses"]) == 1 and rec["tool_calls"][0]["name"] == "Bash"
    assert [c["argv"][0] for c in rec["commands"]] == ["aws", "curl", "gh"]
    assert rec["files"][0]["path"] == ".env" and "OPENAI_API_KEY=" in rec["files"][0]["diff"]
    assert rec["packages"][0]["name"] == "left-pad"
    assert rec["connections"][0]["address"] == "140.82.112.3"
    assert rec["commits"][0]["sha"] == "abc123" and rec["launch"]["command"] == ["claude"]
    assert rec["tool_results"][0]["text"].startswith("SLACK_BOT_TOKEN=")

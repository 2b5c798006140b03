"""The security export: NDJSON, one record per session, with everything the agent did.

Each record holds the launch (argv, cwd, host), prompts, responses, tool calls and results, commands,
file reads and changes (with diffs), package installs, outbound connections, commits and the PRs
that merged them. Secrets are redacted when stored (ingest); the whole record passes through
`redact_obj` again here, so content stored before redaction was in place, or by a path that skipped
it, still leaves without a known credential shape.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import orjson
from sqlalchemy import Engine, bindparam, text

from agenttrail.exports.tables import plain_value
from agenttrail.redact import redact_obj
from agenttrail.reports.base import Filters
from agenttrail.tracer.argv_redact import redact_argv

# Event kind -> the record's list it goes to; session_start/end and llm_call are summarised elsewhere.
EVENT_LISTS = {
    "prompt": "prompts",
    "response": "responses",
    "tool_call": "tool_calls",
    "tool_result": "tool_results",
    "exec": "commands",
    "package_install": "packages",
    "net_connect": "connections",
    "file_read": "file_events",
    "file_write": "file_events",
    "file_create": "file_events",
    "file_delete": "file_events",
    "file_rename": "file_events",
}
LISTS = sorted(set(EVENT_LISTS.values()) | {"files", "commits", "pull_requests"})
SESSION_COLUMNS = (
    "session_id",
    "engineer",
    "team",
    "project",
    "repo",
    "branch",
    "agent",
    "agent_version",
    "model",
    "started_at",
    "ended_at",
    "exit_code",
    "status",
    "calls",
    "cost_usd",
    "merged",
)


def _sessions(engine: Engine, f: Filters, batch: int) -> Iterator[list[dict[str, Any]]]:
    where, params = f.where(time_col="started_at")
    sql = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions WHERE {where} ORDER BY started_at, session_id"
    with engine.connect().execution_options(stream_results=True, yield_per=batch) as conn:
        chunk: list[dict[str, Any]] = []
        for r in conn.execute(text(sql), params):
            chunk.append({c: plain_value(c, v) for c, v in zip(SESSION_COLUMNS, r, strict=True)})
            if len(chunk) >= batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _in(sql: str) -> Any:
    return text(sql).bindparams(bindparam("ids", expanding=True))


def _details(engine: Engine, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {k: [] for k in LISTS} | {"launch": None})
    with engine.connect() as conn:
        for sid, ts, kind, payload in conn.execute(
            _in("SELECT session_id, ts, kind, payload FROM events WHERE session_id IN :ids ORDER BY session_id, ts"),
            {"ids": list(ids)},
        ):
            try:
                body = orjson.loads(payload)
            except orjson.JSONDecodeError:
                body = {"raw": payload}
            item = {"ts": plain_value("ts", ts), **(body if isinstance(body, dict) else {"value": body})}
            if kind == "session_start":
                out[sid]["launch"] = item
            elif kind in EVENT_LISTS:
                if kind.startswith("file_") and body.get("source") == "snapshot":
                    continue  # the snapshot's changes are in `files`, with their diffs
                if kind.startswith("file_"):
                    item["kind"] = kind
                out[sid][EVENT_LISTS[kind]].append(item)
        for row in conn.execute(
            _in(
                "SELECT session_id, path, change, old_path, lines_added, lines_removed, diff, diff_truncated "
                "FROM file_changes WHERE session_id IN :ids"
            ),
            {"ids": list(ids)},
        ):
            sid, *rest = row
            keys = ("path", "change", "old_path", "lines_added", "lines_removed", "diff", "diff_truncated")
            out[sid]["files"].append(dict(zip(keys, rest, strict=True)))
        for sid, sha, message, committed_at in conn.execute(
            _in("SELECT session_id, sha, message, committed_at FROM commits WHERE session_id IN :ids"),
            {"ids": list(ids)},
        ):
            when = plain_value("ts", committed_at)
            out[sid]["commits"].append({"sha": sha, "message": message, "committed_at": when})
        for sid, repo, number, how in conn.execute(
            _in("SELECT session_id, repo, number, how FROM pr_sessions WHERE session_id IN :ids"), {"ids": list(ids)}
        ):
            out[sid]["pull_requests"].append({"repo": repo, "number": number, "linked_by": how})
    return out


def _redact_lists(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _redact_lists(v) for k, v in obj.items()}
    if isinstance(obj, list):
        if obj and all(isinstance(x, str) for x in obj):
            return redact_argv(obj)
        return [_redact_lists(v) for v in obj]
    return obj


def security_records(engine: Engine, f: Filters, *, batch: int = 200) -> Iterator[dict[str, Any]]:
    for chunk in _sessions(engine, f, batch):
        details = _details(engine, [s["session_id"] for s in chunk])
        for s in chunk:
            d: dict[str, Any] = details.get(s["session_id"]) or {k: [] for k in LISTS} | {"launch": None}
            yield _redact_lists(redact_obj({**s, **d}))


def write_security(engine: Engine, f: Filters, out: TextIO) -> int:
    n = 0
    for rec in security_records(engine, f):
        out.write(orjson.dumps(rec, default=str).decode() + "\n")
        n += 1
    return n

"""The event record every source produces: tracer, importers, OTLP, gateway.

An event is what happened in an agent session at one moment. Its id is globally unique and
stable for the same fact, so a re-sent or re-imported event is stored once (ingest is idempotent
by `event_id`). Sources that read the same fact twice (a transcript imported again) must derive
the id from the fact, not from a random number: use `stable_id`.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

EXEC: Final = "exec"
FILE_READ: Final = "file_read"
FILE_WRITE: Final = "file_write"
FILE_CREATE: Final = "file_create"
FILE_DELETE: Final = "file_delete"
FILE_RENAME: Final = "file_rename"
NET_CONNECT: Final = "net_connect"
PACKAGE_INSTALL: Final = "package_install"
PROMPT: Final = "prompt"
RESPONSE: Final = "response"
TOOL_CALL: Final = "tool_call"
TOOL_RESULT: Final = "tool_result"
LLM_CALL: Final = "llm_call"
COMMIT: Final = "commit"
SESSION_START: Final = "session_start"
SESSION_END: Final = "session_end"

KINDS: Final = frozenset(
    {
        EXEC,
        FILE_READ,
        FILE_WRITE,
        FILE_CREATE,
        FILE_DELETE,
        FILE_RENAME,
        NET_CONNECT,
        PACKAGE_INSTALL,
        PROMPT,
        RESPONSE,
        TOOL_CALL,
        TOOL_RESULT,
        LLM_CALL,
        COMMIT,
        SESSION_START,
        SESSION_END,
    }
)


def new_id() -> str:
    """A fresh, globally unique id (time-ordered UUIDv7-like via uuid4 is enough for uniqueness)."""
    return uuid.uuid4().hex


def stable_id(*parts: object) -> str:
    """An id derived from the identity of a fact, so reading the same fact again gives the same id."""
    try:
        joined = "\x1f".join(parts)  # type: ignore[arg-type]  # all strings, the usual case
    except TypeError:
        joined = "\x1f".join(str(p) for p in parts)
    h = hashlib.sha256(joined.encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Event:
    session_id: str
    kind: str
    ts: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=new_id)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if self.ts.tzinfo is None:
            raise ValueError("event timestamps must be timezone-aware (UTC)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "session_id": self.session_id,
            "kind": self.kind,
            "ts": self.ts.astimezone(UTC).isoformat(),
            "payload": self.payload,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        ts = d["ts"]
        if isinstance(ts, str):
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return cls(
            session_id=str(d["session_id"]),
            kind=str(d["kind"]),
            ts=ts,
            payload=dict(d.get("payload") or {}),
            event_id=str(d["event_id"]),
        )

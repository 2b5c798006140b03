"""Transcript builders in the shapes Claude Code 2.1.330 and Codex 0.169.0 write (see docs/importers.md).

The shapes were taken from files the real CLIs wrote against a fake provider; the real-CLI test
(test_real_agent_clis.py) checks the parsers against freshly written ones whenever the CLIs are present.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

T0 = datetime(2026, 5, 4, 9, 0, 0, tzinfo=UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_jsonl(path: Path, lines: list[dict[str, Any]] | list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n")
    return path


def anthropic_usage(
    input_tokens: int = 100,
    output_tokens: int = 20,
    cache_read: int = 0,
    cache_5m: int = 0,
    cache_1h: int = 0,
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_5m + cache_1h,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output_tokens,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
        "cache_creation": {"ephemeral_1h_input_tokens": cache_1h, "ephemeral_5m_input_tokens": cache_5m},
    }


@dataclass
class ClaudeTranscript:
    """Lines of one Claude Code session file (or, with `agent_id`, of one of its subagents)."""

    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    cwd: str = "/home/dev/widgets"
    branch: str = "main"
    version: str = "2.1.330"
    agent_id: str | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    clock: datetime = T0
    _req: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _parent: str | None = None

    def _tick(self) -> str:
        self.clock += timedelta(milliseconds=250)
        return iso(self.clock)

    def _base(self, kind: str) -> dict[str, Any]:
        line: dict[str, Any] = {
            "parentUuid": self._parent,
            "isSidechain": self.agent_id is not None,
            "type": kind,
            "uuid": str(uuid.uuid4()),
            "timestamp": self._tick(),
            "userType": "external",
            "entrypoint": "sdk-cli",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": self.version,
            "gitBranch": self.branch,
        }
        if self.agent_id is not None:
            line["agentId"] = self.agent_id
        self._parent = line["uuid"]
        return line

    def noise(self) -> None:
        """Lines the importer must skip: queue operations, attachments, request shapes."""
        self.lines.append(
            {
                "type": "queue-operation",
                "operation": "enqueue",
                "timestamp": self._tick(),
                "sessionId": self.session_id,
                "content": "x",
            }
        )
        att = self._base("attachment")
        att["attachment"] = {"type": "model", "text": "You are powered by a model."}
        self.lines.append(att)
        self.lines.append(
            {
                "type": "api-request-blob",
                "sessionId": self.session_id,
                "hash": "ab",
                "message": {"role": "user", "content": [{"type": "text", "text": "blob"}]},
            }
        )
        self.lines.append({"type": "tools-used", "tools": ["Bash"], "sessionId": self.session_id})

    def prompt(self, text: str, *, meta: bool = False) -> dict[str, Any]:
        line = self._base("user")
        line["message"] = {"role": "user", "content": text}
        line["promptId"] = str(uuid.uuid4())
        line["promptSource"] = "sdk"
        if meta:
            line["isMeta"] = True
        self.lines.append(line)
        return line

    def tool_result(self, tool_use_id: str, content: Any, *, is_error: bool = False) -> dict[str, Any]:
        line = self._base("user")
        line["message"] = {
            "role": "user",
            "content": [{"tool_use_id": tool_use_id, "type": "tool_result", "content": content, "is_error": is_error}],
        }
        line["toolUseResult"] = {"stdout": str(content), "stderr": ""}
        self.lines.append(line)
        return line

    def response(
        self,
        blocks: list[dict[str, Any]],
        usage: dict[str, Any],
        *,
        model: str = "claude-sonnet-4-5-20250929",
        request_id: str | None = None,
        message_id: str | None = None,
        partial_output: int | None = None,
    ) -> tuple[str, str]:
        """One API response: one assistant line per content block, each repeating the usage. With
        `partial_output`, all lines but the last carry that (streaming, not yet final) output count."""
        n = next(self._req)
        tag = f"{self.session_id[:8]}{self.agent_id or ''}{n:04d}"
        request_id = request_id or f"req_011C{tag}"
        message_id = message_id or f"msg_01{tag}"
        for i, block in enumerate(blocks):
            u = dict(usage)
            if partial_output is not None and i < len(blocks) - 1:
                u["output_tokens"] = partial_output
            line = self._base("assistant")
            line["message"] = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [block],
                "stop_reason": "tool_use" if block.get("type") == "tool_use" else "end_turn",
                "stop_sequence": None,
                "usage": u,
            }
            line["requestId"] = request_id
            line["apiBlockIndex"] = i
            self.lines.append(line)
        return request_id, message_id

    def synthetic_error(self, text: str = "API Error: 529 overloaded") -> None:
        line = self._base("assistant")
        line["message"] = {
            "id": str(uuid.uuid4()),
            "type": "message",
            "role": "assistant",
            "model": "<synthetic>",
            "content": [{"type": "text", "text": text}],
            "usage": anthropic_usage(0, 0),
        }
        line["isApiErrorMessage"] = True
        self.lines.append(line)

    def summary(self, text: str) -> None:
        self.lines.append({"type": "summary", "summary": text, "leafUuid": self._parent})

    def cost_state(self, total_cost: float, start_time: int = 1_795_364_981_251) -> None:
        self.lines.append(
            {
                "type": "cost-state",
                "sessionId": self.session_id,
                "totalCostUSD": total_cost,
                "startTime": start_time,
                "modelUsage": {},
            }
        )

    def write(self, projects: Path) -> Path:
        project = projects / "".join(c if c.isalnum() else "-" for c in self.cwd)
        if self.agent_id is not None:
            return write_jsonl(project / self.session_id / "subagents" / f"agent-{self.agent_id}.jsonl", self.lines)
        return write_jsonl(project / f"{self.session_id}.jsonl", self.lines)


def codex_usage(inp: int, cached: int, out: int, reasoning: int = 0, cache_write: int = 0) -> dict[str, int]:
    return {
        "input_tokens": inp,
        "cached_input_tokens": cached,
        "cache_write_input_tokens": cache_write,
        "output_tokens": out,
        "reasoning_output_tokens": reasoning,
        "total_tokens": inp + out,
    }


@dataclass
class CodexRollout:
    """Lines of one Codex rollout file."""

    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    cwd: str = "/home/dev/gadgets"
    model: str = "gpt-5.5-codex"
    lines: list[dict[str, Any]] = field(default_factory=list)
    clock: datetime = T0
    total: dict[str, int] = field(default_factory=lambda: codex_usage(0, 0, 0))

    def _line(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.clock += timedelta(milliseconds=250)
        line = {"timestamp": iso(self.clock), "type": kind, "payload": payload}
        self.lines.append(line)
        return line

    def meta(self, *, git: dict[str, str] | None = None) -> None:
        self._line(
            "session_meta",
            {
                "id": self.session_id,
                "timestamp": iso(self.clock),
                "cwd": self.cwd,
                "originator": "codex_exec",
                "cli_version": "0.169.0",
                "source": "exec",
                "model_provider": "openai",
                "base_instructions": {"text": "You are Codex."},
                "git": git
                if git is not None
                else {
                    "commit_hash": "962e4ff77d7b122946e6441c6fcfe5be51cf8cf3",
                    "branch": "feature/x",
                    "repository_url": "https://github.com/acme/gadgets.git",
                },
            },
        )

    def turn_context(self, model: str | None = None) -> None:
        if model:
            self.model = model
        self._line(
            "turn_context",
            {
                "turn_id": str(uuid.uuid4()),
                "cwd": self.cwd,
                "model": self.model,
                "approval_policy": "never",
                "summary": "none",
            },
        )

    def user(self, text: str) -> None:
        self._line(
            "response_item", {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        )

    def environment(self) -> None:
        self._line(
            "response_item",
            {
                "type": "message",
                "role": "user",
                "content": [
                    {
                        "type": "input_text",
                        "text": f"<environment_context>\n  <cwd>{self.cwd}</cwd>\n</environment_context>",
                    }
                ],
            },
        )
        self._line(
            "response_item",
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "<permissions instructions>"}],
            },
        )

    def assistant(self, text: str) -> None:
        self._line(
            "response_item",
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            },
        )

    def reasoning(self, summary: str) -> None:
        self._line(
            "response_item",
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": summary}], "encrypted_content": "gAAAA"},
        )

    def function_call(self, call_id: str, name: str = "exec_command", args: dict[str, Any] | None = None) -> None:
        self._line(
            "response_item",
            {
                "type": "function_call",
                "name": name,
                "arguments": orjson.dumps(args or {"cmd": "ls"}).decode(),
                "call_id": call_id,
            },
        )

    def function_output(self, call_id: str, output: str) -> None:
        self._line("response_item", {"type": "function_call_output", "call_id": call_id, "output": output})

    def custom_call(self, call_id: str, patch: str) -> None:
        self._line(
            "response_item", {"type": "custom_tool_call", "call_id": call_id, "name": "apply_patch", "input": patch}
        )

    def custom_output(self, call_id: str, output: str) -> None:
        self._line("response_item", {"type": "custom_tool_call_output", "call_id": call_id, "output": output})

    def token_count(self, last: dict[str, int] | None, *, repeat: int = 1, total: dict[str, int] | None = None) -> None:
        """A token_count event for one response (`last`); `total` accumulates unless given.
        `repeat` writes the identical event that many times, as Codex does."""
        if total is None and last is not None:
            self.total = {k: self.total.get(k, 0) + v for k, v in last.items()}
            total = self.total
        info = {"total_token_usage": dict(total or {}), "last_token_usage": last, "model_context_window": 258400}
        line = self._line("event_msg", {"type": "token_count", "info": info, "rate_limits": None})
        for _ in range(repeat - 1):
            self.lines.append(dict(line))

    def rate_limit_only(self) -> None:
        self._line("event_msg", {"type": "token_count", "info": None, "rate_limits": {"primary": None}})

    def usage_record(self, response_id: str, usage: dict[str, int]) -> None:
        self._line(
            "token_usage_record",
            {
                "session_id": self.session_id,
                "thread_id": self.session_id,
                "turn_id": "t",
                "response_id": response_id,
                "usage": usage,
            },
        )

    def write(self, home: Path) -> Path:
        """Write (or rewrite, with the lines added since) the rollout file, named from its first line."""
        start = datetime.fromisoformat(self.lines[0]["timestamp"]) if self.lines else self.clock
        day = start.strftime("%Y/%m/%d")
        stamp = start.strftime("%Y-%m-%dT%H-%M-%S")
        return write_jsonl(home / "sessions" / day / f"rollout-{stamp}-{self.session_id}.jsonl", self.lines)

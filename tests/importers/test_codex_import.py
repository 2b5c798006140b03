from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from agenttrail.events import PROMPT, RESPONSE, TOOL_CALL, TOOL_RESULT
from agenttrail.importers import MemoryStateStore, codex_home, find_codex_files, import_codex
from agenttrail.importers.codex import usage_from_codex
from agenttrail.usage import Usage

from .builders import CodexRollout, codex_usage

PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"


def _rollout(r: CodexRollout, *, repeat: int = 1) -> None:
    r.meta()
    r.environment()
    r.turn_context()
    r.user("Add hello.txt and list files")
    r.reasoning("Plan: patch, then ls.")
    r.function_call("call_1", args={"cmd": "ls"})
    r.custom_call("call_2", PATCH)
    r.token_count(codex_usage(1500, 1000, 300, reasoning=120), repeat=repeat)
    r.function_output("call_1", "Chunk ID: 1\nProcess exited with code 0\nOutput:\nhello.txt\n")
    r.custom_output("call_2", "Exit code: 0\nOutput:\nSuccess. Updated the following files:\nA hello.txt\n")
    r.rate_limit_only()
    r.assistant("Done.")
    r.token_count(codex_usage(2000, 1800, 40), repeat=repeat)


def test_usage_conversion() -> None:
    # Codex input includes cached input; output includes reasoning.
    assert usage_from_codex((1500, 1000, 0, 300, 120)) == Usage(
        input_tokens=500, cache_read_tokens=1000, output_tokens=300, reasoning_tokens=120
    )
    assert usage_from_codex((100, 30, 20, 5, 0)) == Usage(
        input_tokens=50, cache_read_tokens=30, cache_write_5m_tokens=20, output_tokens=5
    )
    # Inconsistent figures never go negative.
    assert usage_from_codex((10, 50, 0, 1, 0)).input_tokens == 0


def test_token_count_calls_counted_once_despite_repeats(tmp_path: Path) -> None:
    r = CodexRollout()
    _rollout(r, repeat=3)
    r.write(tmp_path)

    batch = import_codex(tmp_path)

    assert batch.errors == [] and batch.warnings == []
    assert len(batch.calls) == 2
    assert batch.total_usage() == Usage(
        input_tokens=500 + 200, cache_read_tokens=1000 + 1800, output_tokens=340, reasoning_tokens=120
    )
    assert all(c.provider == "openai" and c.agent == "codex" for c in batch.calls)
    assert all(c.model == "gpt-5.5-codex" and c.session_id == r.session_id for c in batch.calls)


def test_last_usage_is_per_response_and_total_only_cross_checks(tmp_path: Path) -> None:
    r = CodexRollout()
    r.meta()
    r.turn_context()
    r.token_count(codex_usage(100, 0, 10))
    # The cumulative total disagrees with the last response's usage: last_token_usage wins, a warning says so.
    r.token_count(codex_usage(50, 0, 5), total=codex_usage(170, 0, 17))
    path = r.write(tmp_path)

    batch = import_codex(tmp_path)

    assert batch.total_usage() == Usage(input_tokens=150, output_tokens=15)
    (warning,) = batch.warnings
    assert warning.path == str(path) and warning.line_no == 4


def test_total_only_token_counts_use_deltas(tmp_path: Path) -> None:
    r = CodexRollout()
    r.meta()
    r.turn_context()
    r.token_count(None, total=codex_usage(100, 40, 10))
    r.token_count(None, total=codex_usage(100, 40, 10))  # a repeat
    r.token_count(None, total=codex_usage(250, 90, 30))
    r.write(tmp_path)

    batch = import_codex(tmp_path)

    assert len(batch.calls) == 2
    assert batch.total_usage() == Usage(input_tokens=160, cache_read_tokens=90, output_tokens=30)


def test_usage_records_are_the_calls_when_present(tmp_path: Path) -> None:
    r = CodexRollout()
    r.meta()
    r.turn_context()
    r.usage_record("resp_abc", codex_usage(200, 80, 30, reasoning=12))
    r.token_count(codex_usage(200, 80, 30, reasoning=12))
    r.usage_record("resp_def", codex_usage(200, 80, 30, reasoning=12))
    r.token_count(codex_usage(200, 80, 30, reasoning=12))
    r.write(tmp_path)

    batch = import_codex(tmp_path)

    assert sorted(c.request_id or "" for c in batch.calls) == ["resp_abc", "resp_def"]
    assert batch.total_usage() == Usage(input_tokens=240, cache_read_tokens=160, output_tokens=60, reasoning_tokens=24)


def test_model_follows_turn_context(tmp_path: Path) -> None:
    r = CodexRollout()
    r.meta()
    r.turn_context("gpt-5")
    r.token_count(codex_usage(10, 0, 1))
    r.turn_context("gpt-5-mini")
    r.token_count(codex_usage(20, 0, 2))
    r.write(tmp_path)

    batch = import_codex(tmp_path)

    assert sorted((c.model or "", c.usage.input_tokens) for c in batch.calls) == [("gpt-5", 10), ("gpt-5-mini", 20)]
    assert batch.sessions[0].models == ["gpt-5", "gpt-5-mini"]


def test_session_meta(tmp_path: Path) -> None:
    r = CodexRollout()
    _rollout(r)
    path = r.write(tmp_path)

    (s,) = import_codex(tmp_path).sessions

    assert s.agent == "codex"
    assert s.agent_session_id == r.session_id
    assert s.cwd == "/home/dev/gadgets"
    assert s.repo_url == "https://github.com/acme/gadgets.git"
    assert s.branch == "feature/x"
    assert s.git_commit == "962e4ff77d7b122946e6441c6fcfe5be51cf8cf3"
    assert s.agent_version == "0.169.0"
    assert s.source_path == str(path)
    assert s.started_at is not None and s.ended_at is not None and s.started_at < s.ended_at


def test_dialogue_events(tmp_path: Path) -> None:
    r = CodexRollout()
    _rollout(r)
    r.write(tmp_path)

    batch = import_codex(tmp_path)

    kinds = [e.kind for e in batch.events]
    assert kinds == [PROMPT, RESPONSE, TOOL_CALL, TOOL_CALL, TOOL_RESULT, TOOL_RESULT, RESPONSE]
    prompt, reasoning, shell, patch, shell_out, patch_out, done = batch.events
    assert prompt.payload["text"] == "Add hello.txt and list files"
    assert reasoning.payload["block"] == "reasoning"
    assert shell.payload == {"tool_use_id": "call_1", "name": "exec_command", "input": {"cmd": "ls"}}
    assert patch.payload["name"] == "apply_patch" and patch.payload["input"] == PATCH
    assert shell_out.payload["tool_use_id"] == "call_1" and shell_out.payload["is_error"] is False
    assert patch_out.payload["tool_use_id"] == "call_2" and "Success" in patch_out.payload["text"]
    assert done.payload["text"] == "Done."
    assert len({e.event_id for e in batch.events}) == len(batch.events)


def test_failed_tool_output_is_an_error(tmp_path: Path) -> None:
    r = CodexRollout()
    r.meta()
    r.function_call("c1")
    r.function_output("c1", "Process exited with code 2\nOutput:\nls: no such file\n")
    r.function_call("c2")
    r.function_output("c2", '{"output": "boom", "metadata": {"exit_code": 1, "duration_seconds": 0.1}}')
    r.write(tmp_path)

    results = [e for e in import_codex(tmp_path).events if e.kind == TOOL_RESULT]

    assert [e.payload["is_error"] for e in results] == [True, True]
    assert results[1].payload["text"] == "boom"


def test_copies_of_a_rollout_count_once(tmp_path: Path) -> None:
    r = CodexRollout()
    _rollout(r)
    path = r.write(tmp_path)
    copy = path.with_name("rollout-copy.jsonl")
    shutil.copy(path, copy)

    batch = import_codex(tmp_path)

    assert batch.files_read == 2
    assert len(batch.calls) == 2
    assert batch.total_usage().output_tokens == 340


def test_default_location_honours_codex_home(tmp_path: Path) -> None:
    r = CodexRollout()
    _rollout(r)
    r.write(tmp_path / "ch")
    env = {"CODEX_HOME": str(tmp_path / "ch"), "HOME": str(tmp_path / "home")}

    assert codex_home(env) == tmp_path / "ch"
    assert codex_home({"HOME": "/x"}) == Path("/x/.codex")
    assert len(find_codex_files(env=env)) == 1
    assert len(import_codex(env=env).calls) == 2


def test_incremental_resume_keeps_context(tmp_path: Path) -> None:
    """A resumed read knows the session id, model and last cumulative total from the carry."""
    r = CodexRollout()
    r.meta()
    r.turn_context("gpt-5")
    r.token_count(codex_usage(100, 0, 10))
    path = r.write(tmp_path)
    store = MemoryStateStore()
    first = import_codex(tmp_path, state=store)
    first.commit(store)

    r.token_count(codex_usage(100, 0, 10), total=r.total, repeat=1)  # a repeat of the last event
    r.token_count(codex_usage(7, 0, 3))
    r.assistant("later")
    path.write_bytes(b"")
    r.write(tmp_path)
    second = import_codex(tmp_path, state=store)

    assert len(first.calls) == 1
    (call,) = second.calls
    assert call.usage.input_tokens == 7
    assert call.session_id == r.session_id and call.model == "gpt-5"
    assert [e.session_id for e in second.events] == [r.session_id]


def test_usage_only_reads_the_usage_lines_and_counts_the_same_calls(tmp_path: Path) -> None:
    counted = CodexRollout()  # calls from token_count, repeats included
    _rollout(counted, repeat=2)
    counted.turn_context("gpt-5")
    counted.user("and again")
    counted.token_count(codex_usage(900, 100, 70))
    counted.assistant("bye")
    recorded = CodexRollout()  # calls from token_usage_record
    recorded.meta(git={"commit_hash": "abc123", "branch": "dev", "repository_url": "git@github.com:o/r.git"})
    recorded.user("hi")
    recorded.turn_context()
    recorded.usage_record("resp_1", codex_usage(200, 80, 30, reasoning=12))
    recorded.token_count(codex_usage(200, 80, 30, reasoning=12))
    recorded.assistant("hello")
    for r in (counted, recorded):
        r.write(tmp_path)

    full = import_codex(tmp_path)
    fast = import_codex(tmp_path, with_events=False)

    assert fast.events == [] and fast.errors == full.errors == []
    assert fast.warnings == full.warnings
    assert sorted(fast.calls, key=lambda c: c.call_id) == sorted(full.calls, key=lambda c: c.call_id)
    assert len(fast.calls) == 4
    for ss in fast.sessions:
        (fs,) = [s for s in full.sessions if s.agent_session_id == ss.agent_session_id]
        assert (ss.cwd, ss.branch, ss.repo_url, ss.git_commit, ss.agent_version, ss.models) == (
            fs.cwd, fs.branch, fs.repo_url, fs.git_commit, fs.agent_version, fs.models,
        )  # fmt: skip
        # Response items (the last line of each rollout is one) are not read: the span is the usage lines'.
        assert fs.started_at == ss.started_at and ss.ended_at is not None and fs.ended_at is not None
        assert ss.ended_at < fs.ended_at


def test_usage_only_still_reads_lines_laid_out_otherwise(tmp_path: Path) -> None:
    # Only a line shown by its first bytes to be a response item (or another event) is skipped unread.
    r = CodexRollout()
    r.meta()
    r.turn_context()
    path = r.write(tmp_path)
    usage = codex_usage(100, 0, 10)
    info = {"last_token_usage": usage, "total_token_usage": usage}
    with path.open("ab") as f:  # payload before type, and an ordinal: still a token_count
        f.write(
            b'{"payload":{"info":%s,"type":"token_count"},"type":"event_msg","timestamp":"2026-05-04T09:00:09Z"}\n'
            % orjson.dumps(info)
        )
        f.write(
            b'{"timestamp":"2026-05-04T09:00:10Z","ordinal":7,"type":"response_item","payload":{"type":"message"}}\n'
        )

    fast = import_codex(tmp_path, with_events=False)

    assert fast.total_usage() == Usage(input_tokens=100, output_tokens=10)

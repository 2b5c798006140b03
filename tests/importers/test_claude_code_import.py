from __future__ import annotations

from pathlib import Path

from agenttrail.events import PROMPT, RESPONSE, TOOL_CALL, TOOL_RESULT
from agenttrail.importers import (
    MemoryStateStore,
    claude_projects_dirs,
    find_claude_code_files,
    import_claude_code,
)
from agenttrail.importers.claude_code import call_id_for
from agenttrail.usage import Usage

from .builders import ClaudeTranscript, anthropic_usage


def _session_with_tool(t: ClaudeTranscript) -> None:
    t.noise()
    t.prompt("Create hello.py")
    t.response(
        [
            {"type": "thinking", "thinking": "Plan: write the file.", "signature": "c2ln"},
            {"type": "text", "text": "I'll create it."},
            {
                "type": "tool_use",
                "id": "toolu_01A",
                "name": "Write",
                "input": {"file_path": "hello.py", "content": "print('hi')\n"},
            },
        ],
        anthropic_usage(1200, 250, cache_read=3000, cache_5m=400, cache_1h=100),
        partial_output=1,
    )
    t.tool_result("toolu_01A", "File created successfully at: hello.py")
    t.response([{"type": "text", "text": "Done."}], anthropic_usage(10, 5, cache_read=4000))


def test_usage_counted_once_per_response_with_final_output(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    _session_with_tool(t)
    t.write(tmp_path / "projects")

    batch = import_claude_code(tmp_path / "projects")

    assert batch.errors == []
    assert len(batch.calls) == 2
    first = next(c for c in batch.calls if c.usage.input_tokens == 1200)
    # Three lines repeated the usage; the first two carried a partial output count.
    assert first.usage == Usage(
        input_tokens=1200,
        cache_read_tokens=3000,
        cache_write_5m_tokens=400,
        cache_write_1h_tokens=100,
        output_tokens=250,
    )
    assert first.provider == "anthropic"
    assert first.agent == "claude-code"
    assert first.model == "claude-sonnet-4-5-20250929"
    assert first.request_id and first.request_id.startswith("req_")
    assert first.message_id and first.message_id.startswith("msg_")
    assert first.session_id == t.session_id
    assert first.cwd == t.cwd and first.git_branch == "main"
    assert batch.total_usage() == Usage(1210, 7000, 400, 100, 255)


def test_dialogue_events(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    _session_with_tool(t)
    t.prompt("<system-reminder>injected</system-reminder>", meta=True)
    t.write(tmp_path / "projects")

    batch = import_claude_code(tmp_path / "projects")

    kinds = [e.kind for e in batch.events]
    assert kinds == [PROMPT, RESPONSE, RESPONSE, TOOL_CALL, TOOL_RESULT, RESPONSE]
    prompt, thinking, text, call, result, done = batch.events
    assert prompt.payload["text"] == "Create hello.py"
    assert thinking.payload["block"] == "thinking"
    assert text.payload["text"] == "I'll create it."
    assert call.payload["name"] == "Write"
    assert call.payload["tool_use_id"] == "toolu_01A"
    assert call.payload["input"] == {"file_path": "hello.py", "content": "print('hi')\n"}
    assert result.payload["tool_use_id"] == "toolu_01A"
    assert result.payload["is_error"] is False
    assert result.payload["text"].startswith("File created")
    assert done.payload["text"] == "Done."
    assert all(e.session_id == t.session_id for e in batch.events)
    assert len({e.event_id for e in batch.events}) == len(batch.events)


def test_session_record(tmp_path: Path) -> None:
    t = ClaudeTranscript(branch="feature/login")
    _session_with_tool(t)
    t.summary("Create hello.py")
    t.cost_state(0.0123, start_time=1)
    t.cost_state(0.0456, start_time=1)  # cumulative within one run: the last one counts
    t.cost_state(0.01, start_time=2)  # a resumed run
    path = t.write(tmp_path / "projects")

    (s,) = import_claude_code(tmp_path / "projects").sessions

    assert s.agent == "claude-code"
    assert s.agent_session_id == t.session_id
    assert s.cwd == "/home/dev/widgets"
    assert s.branch == "feature/login"
    assert s.models == ["claude-sonnet-4-5-20250929"]
    assert s.source_path == str(path)
    assert s.agent_version == "2.1.330"
    assert s.title == "Create hello.py"
    assert s.started_at is not None and s.ended_at is not None and s.started_at < s.ended_at
    assert s.agent_reported_cost_usd == 0.0456 + 0.01


def test_tool_result_error_and_cap(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    t.prompt("run it")
    t.response(
        [{"type": "tool_use", "id": "toolu_X", "name": "Bash", "input": {"command": "false"}}], anthropic_usage()
    )
    t.tool_result("toolu_X", [{"type": "text", "text": "x" * 50_000}], is_error=True)
    t.write(tmp_path / "projects")

    batch = import_claude_code(tmp_path / "projects", content_cap=1000)

    (result,) = [e for e in batch.events if e.kind == TOOL_RESULT]
    assert result.payload["is_error"] is True
    assert result.payload["truncated"] is True
    assert result.payload["length"] == 50_000
    assert len(result.payload["text"]) == 1000


def test_subagents_attributed_to_parent_session(tmp_path: Path) -> None:
    parent = ClaudeTranscript()
    parent.prompt("Delegate")
    parent.response(
        [
            {
                "type": "tool_use",
                "id": "toolu_T",
                "name": "Agent",
                "input": {"description": "sub", "prompt": "look", "subagent_type": "general-purpose"},
            }
        ],
        anthropic_usage(100, 10),
    )
    parent.tool_result("toolu_T", "Async agent launched")
    sub = ClaudeTranscript(session_id=parent.session_id, agent_id="a85705645099c64c8")
    sub.prompt("look")
    sub.response([{"type": "text", "text": "found it"}], anthropic_usage(300, 30), model="claude-haiku-4-5-20251001")
    parent.write(tmp_path / "projects")
    sub_path = sub.write(tmp_path / "projects")
    assert sub_path.parent.name == "subagents"

    batch = import_claude_code(tmp_path / "projects")

    assert len(batch.sessions) == 1
    (s,) = batch.sessions
    assert s.agent_session_id == parent.session_id
    assert set(s.models) == {"claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"}
    assert s.source_path is not None and Path(s.source_path).parent.name != "subagents"
    assert batch.total_usage().input_tokens == 400
    sub_call = next(c for c in batch.calls if c.usage.input_tokens == 300)
    assert sub_call.subagent_id == "a85705645099c64c8"
    sub_events = [e for e in batch.events if e.payload.get("is_sidechain")]
    assert len(sub_events) == 2
    assert all(e.session_id == parent.session_id for e in sub_events)
    assert all(e.payload["subagent_id"] == "a85705645099c64c8" for e in sub_events)


def test_synthetic_messages_are_not_calls(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    t.prompt("hi")
    t.synthetic_error()
    t.write(tmp_path / "projects")

    batch = import_claude_code(tmp_path / "projects")

    assert batch.calls == []
    (resp,) = [e for e in batch.events if e.kind == RESPONSE]
    assert resp.payload["synthetic"] is True
    assert batch.sessions[0].models == []


def test_resumed_session_copy_counts_each_call_once(tmp_path: Path) -> None:
    """`claude --resume` writes a new file that repeats the earlier lines: same request ids."""
    t = ClaudeTranscript()
    _session_with_tool(t)
    t.write(tmp_path / "projects")
    resumed = ClaudeTranscript(
        session_id="resumed-0000", lines=[dict(line, sessionId="resumed-0000") for line in t.lines]
    )
    resumed.prompt("and now?")
    resumed.response([{"type": "text", "text": "More."}], anthropic_usage(7, 3))
    resumed.write(tmp_path / "projects")

    batch = import_claude_code(tmp_path / "projects")

    assert len(batch.calls) == 3
    assert batch.total_usage().input_tokens == 1200 + 10 + 7


def test_ids_are_stable_and_path_independent(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    _session_with_tool(t)
    t.write(tmp_path / "a" / "projects")
    t.write(tmp_path / "b" / "projects")

    a = import_claude_code(tmp_path / "a" / "projects")
    b = import_claude_code(tmp_path / "b" / "projects")

    assert [e.event_id for e in a.events] == [e.event_id for e in b.events]
    assert sorted(c.call_id for c in a.calls) == sorted(c.call_id for c in b.calls)
    req = a.calls[0].request_id
    assert a.calls[0].call_id == call_id_for(req, "ignored", "ignored")


def test_default_location_honours_claude_config_dir(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    t.prompt("hi")
    t.write(tmp_path / "cfg" / "projects")
    env = {"CLAUDE_CONFIG_DIR": str(tmp_path / "cfg"), "HOME": str(tmp_path / "home")}

    assert claude_projects_dirs(env) == [tmp_path / "cfg" / "projects"]
    assert claude_projects_dirs({"HOME": str(tmp_path / "home")}) == [tmp_path / "home" / ".claude" / "projects"]
    assert len(find_claude_code_files(env=env)) == 1
    assert len(import_claude_code(env=env).sessions) == 1
    # A config folder given as PATH is looked into for projects/.
    assert len(find_claude_code_files(tmp_path / "cfg")) == 1


def test_reimport_with_state_adds_nothing(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    _session_with_tool(t)
    t.write(tmp_path / "projects")
    store = MemoryStateStore()

    first = import_claude_code(tmp_path / "projects", state=store)
    first.commit(store)
    again = import_claude_code(tmp_path / "projects", state=store)

    assert len(first.calls) == 2 and len(first.events) == 6
    assert again.calls == [] and again.events == [] and again.sessions == []
    assert again.files_skipped == 1 and again.files_read == 0


def test_usage_only_mode_skips_events(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    _session_with_tool(t)
    t.write(tmp_path / "projects")

    batch = import_claude_code(tmp_path / "projects", with_events=False)

    assert batch.events == []
    assert len(batch.calls) == 2


def test_usage_only_reads_the_responses_and_counts_the_same_calls(tmp_path: Path) -> None:
    t = ClaudeTranscript()
    t.summary("Hello script")
    _session_with_tool(t)
    t.prompt("x" * 50_000)  # a long prompt, then a response split over lines with a growing output count
    t.response(
        [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "text", "text": "ok"}],
        anthropic_usage(7, 90, cache_read=100),
        partial_output=3,
    )
    t.cost_state(0.42)
    t.prompt("and the last word")
    path = t.write(tmp_path / "projects")
    sub = ClaudeTranscript(session_id=t.session_id, agent_id="a1")  # early in the session
    sub.prompt("look around")
    sub.response([{"type": "text", "text": "seen"}], anthropic_usage(30, 8))
    sub.write(tmp_path / "projects")
    with path.open("ab") as f:
        f.write(b'{"type":"user","message":{"content":"cut sh\n')  # damaged, and no usage in it

    full = import_claude_code(tmp_path / "projects")
    fast = import_claude_code(tmp_path / "projects", with_events=False)

    assert fast.events == []
    assert sorted(fast.calls, key=lambda c: c.call_id) == sorted(full.calls, key=lambda c: c.call_id)
    assert len(fast.calls) == 4 and len(full.errors) == 1 and fast.errors == []  # that line is not read
    (fs,), (ss,) = full.sessions, fast.sessions
    assert (ss.cwd, ss.branch, ss.agent_version, ss.models, ss.title) == (
        fs.cwd,
        fs.branch,
        fs.agent_version,
        fs.models,
        fs.title,
    )
    assert ss.agent_cost_by_run == fs.agent_cost_by_run == {"1795364981251": 0.42}
    # The span is that of the responses: the first prompt and the last one are not read.
    assert ss.started_at == min(c.ts for c in fast.calls) > fs.started_at
    assert ss.ended_at is not None and fs.ended_at is not None
    assert max(c.ts for c in fast.calls) < ss.ended_at < fs.ended_at  # the last response's last line

"""Scripted turns: cursors, sessions, tool gating, per-turn usage, and the scenario file formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from agenttrail.testing import MockConfig, MockControl, Scenario, load_scenario, run_in_thread
from agenttrail.testing.mock_config import DEFAULT_TEXT

USER: Any = [{"role": "user", "content": "hi"}]
TOOLS: Any = [{"name": "Write", "description": "w", "input_schema": {"type": "object", "properties": {}}}]


def _say(client: anthropic.Anthropic, messages: Any = USER, tools: Any = TOOLS, **kw: Any) -> Any:
    return client.messages.create(model="claude-x", max_tokens=10, messages=messages, tools=tools, **kw)


def _text(msg: Any) -> str:
    return "".join(b.text for b in msg.content if b.type == "text")


def test_request_cursor_then_final(claude: anthropic.Anthropic, control: MockControl) -> None:
    control.set_scenario({"turns": [{"text": "one"}, {"text": "two"}], "final": "the end"})
    assert [_text(_say(claude)) for _ in range(4)] == ["one", "two", "the end", "the end"]


def test_after_last_repeats_last_plain_text_else_done(claude: anthropic.Anthropic, control: MockControl) -> None:
    control.set_scenario([{"text": "one"}, {"text": "last words"}])
    assert [_text(_say(claude)) for _ in range(3)] == ["one", "last words", "last words"]
    control.set_scenario([{"tool": "Write", "input": {}}])
    assert _say(claude).content[0].type == "tool_use"
    assert _text(_say(claude)) == "Done."


def test_cursor_per_session_header(claude: anthropic.Anthropic, control: MockControl) -> None:
    control.set_scenario([{"text": "first"}, {"text": "second"}])
    a = {"X-Claude-Code-Session-Id": "session-a"}
    b = {"X-Claude-Code-Session-Id": "session-b"}
    assert _text(_say(claude, extra_headers=a)) == "first"
    assert _text(_say(claude, extra_headers=b)) == "first"
    assert _text(_say(claude, extra_headers=a)) == "second"
    assert _text(_say(claude, extra_headers={"session-id": "codex-1"})) == "first"


def test_tool_turn_needs_declared_tools(claude: anthropic.Anthropic, control: MockControl) -> None:
    control.set_scenario([{"text": "Creating it.", "tool": "Write", "input": {"file_path": "a"}}, {"text": "done"}])
    side = claude.messages.create(model="claude-x", max_tokens=10, messages=USER)  # e.g. a title request
    assert [b.type for b in side.content] == ["text"] and _text(side) == "Creating it."
    assert [b.type for b in _say(claude).content] == ["text", "tool_use"], "the side request did not advance"
    assert _text(_say(claude)) == "done"


def test_history_cursor_follows_the_conversation(claude: anthropic.Anthropic, control: MockControl) -> None:
    control.set_scenario(
        {"cursor": "history", "turns": [{"tool": "Write", "input": {"file_path": "a"}}, {"text": "written"}]}
    )
    first = _say(claude)
    assert first.content[0].type == "tool_use"
    assert _say(claude).content[0].type == "tool_use", "a retry gets the same turn"
    follow_up = [
        *USER,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": first.content[0].id, "content": "ok"}],
        },
    ]
    assert _text(_say(claude, follow_up)) == "written"


def test_history_cursor_with_previous_response_id(oai: openai.OpenAI, control: MockControl) -> None:
    control.set_scenario({"cursor": "history", "turns": [{"text": "r1"}, {"text": "r2"}, {"text": "r3"}]})
    first = oai.responses.create(model="gpt-5", input="hi")
    assert first.output_text == "r1"
    second = oai.responses.create(model="gpt-5", input="more", previous_response_id=first.id)
    assert second.output_text == "r2"
    replay: Any = [
        {"role": "user", "content": "hi"},
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"role": "assistant", "content": "r2"},
        {"role": "user", "content": "again"},
    ]
    assert oai.responses.create(model="gpt-5", input=replay).output_text == "r3"


def test_turn_usage_override_in_every_format(
    claude: anthropic.Anthropic, oai: openai.OpenAI, control: MockControl
) -> None:
    usage = {"output_tokens": 42, "cache_read_tokens": 0, "input_tokens": 7}
    control.set_scenario([{"text": "cheap", "usage": usage}])
    u = _say(claude).usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens, u.output_tokens) == (
        7,
        0,
        500,
        42,
    )
    c = oai.chat.completions.create(model="m", messages=USER).usage
    assert c is not None and (c.prompt_tokens, c.completion_tokens) == (7, 42)
    r = oai.responses.create(model="m", input="hi").usage
    assert r is not None and (r.input_tokens, r.input_tokens_details.cached_tokens, r.output_tokens) == (7, 0, 42)


def test_scenario_at_start_and_in_files(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text(
        'cursor = "request"\nfinal = "bye"\n\n'
        '[[turns]]\ntext = "hello"\n\n'
        '[[turns]]\ntool = "Write"\ninput = { file_path = "x.py", content = "1" }\n'
        "usage = { output_tokens = 5 }\n"
    )
    js = tmp_path / "s.json"
    js.write_text(json.dumps([{"text": "hello"}, {"tool": "Write", "input": {"file_path": "x.py", "content": "1"}}]))
    a, b = load_scenario(toml), load_scenario(js)
    assert a.turns[0] == b.turns[0] and a.turns[1].calls == b.turns[1].calls
    assert a.final == "bye" and a.turns[1].usage == {"output_tokens": 5}
    with run_in_thread(MockConfig(scenario=a)) as url:
        client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
        assert _text(_say(client)) == "hello"
        tool = _say(client)
        assert tool.content[0].input == {"file_path": "x.py", "content": "1"} and tool.usage.output_tokens == 5
        assert _text(_say(client)) == "bye"


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        ([], "non-empty"),
        ([{"txt": "typo"}], "unknown keys"),
        ([{"tool": "Write", "input": "not an object"}], "custom_tool"),
        ([{"text": "x", "usage": {"tokens": 1}}], "usage"),
        ({"turns": [{"text": "x"}], "cursor": "sometimes"}, "cursor"),
    ],
)
def test_bad_scenarios_are_explained(raw: Any, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Scenario.parse(raw)


def test_bad_scenario_posted_at_runtime(control: MockControl, claude: anthropic.Anthropic) -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        control.set_scenario([{"txt": "typo"}])
    assert _text(_say(claude)) == DEFAULT_TEXT


@pytest.mark.parametrize("value", [2**64, -1, 1.5, "12", True])
def test_a_usage_override_no_wire_format_can_carry_is_refused_when_loaded(value: object) -> None:
    # 2**64 was loaded, then every answer of that turn was a 500 with a traceback in the mock's log
    # ("Integer exceeds 64-bit range"); -1 and "12" were taken as they came.
    with pytest.raises(ValueError, match="output_tokens must be a whole number from 0"):
        Scenario.parse([{"text": "x", "usage": {"output_tokens": value}}])

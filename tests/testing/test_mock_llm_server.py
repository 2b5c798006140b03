"""Recording, probes, latency, runtime settings, text splitting, and the `agenttrail mock-llm` command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from agenttrail.cli.main import app as cli_app
from agenttrail.testing import MockConfig, MockControl, parse_sse, run_in_thread
from agenttrail.testing.mock_wire import split_json, split_text

USER: Any = [{"role": "user", "content": "hi"}]


def test_requests_are_recorded_with_credentials(
    claude: anthropic.Anthropic, oai: openai.OpenAI, control: MockControl
) -> None:
    claude.messages.create(model="claude-x", max_tokens=5, messages=USER, metadata={"user_id": '{"id": "u"}'})
    oai.chat.completions.create(model="gpt-5", messages=USER)
    seen = control.requests()
    assert [r["endpoint"] for r in seen] == ["messages", "chat"]
    first, second = seen
    assert first["method"] == "POST" and first["path"] == "/v1/messages"
    # Older Anthropic SDKs send the key as x-api-key, newer ones as a Bearer token: both reach the mock.
    sent = first["headers"].get("x-api-key") or first["headers"]["authorization"].removeprefix("Bearer ")
    assert sent == "sk-ant-test"
    assert first["body"]["metadata"] == {"user_id": '{"id": "u"}'}
    assert second["headers"]["authorization"] == "Bearer sk-openai-test"
    assert second["seq"] > first["seq"]
    assert [r["endpoint"] for r in control.requests(endpoint="chat")] == ["chat"]
    assert control.requests(since=first["seq"]) == [second]
    control.reset()
    assert control.requests() == []


def test_record_file_and_bound(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    with run_in_thread(MockConfig(record_path=log, max_recorded=2)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        for i in range(3):
            client.embeddings.create(model="m", input=f"text {i}")
        kept = MockControl(url).requests()
    assert [r["body"]["input"] for r in kept] == ["text 1", "text 2"]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["body"]["input"] for r in lines] == ["text 0", "text 1", "text 2"]


def test_probes_answer_200(raw: httpx.Client, control: MockControl) -> None:
    assert raw.head("/").status_code == 200
    assert raw.get("/").status_code == 200
    assert raw.head("/anthropic").status_code == 200
    assert raw.post("/v1/nothing-here", headers={"x-api-key": "k"}).status_code == 404


def test_latency_ttft_and_chunks() -> None:
    with run_in_thread(MockConfig(ttft_ms=150, chunk_ms=40, stream_chunks=4)) as url:
        started = time.monotonic()
        with httpx.stream(
            "POST",
            url + "/v1/chat/completions",
            headers={"authorization": "Bearer k"},
            json={"model": "m", "messages": USER, "stream": True},
        ) as r:
            first_byte = None
            for _ in r.iter_raw():
                first_byte = first_byte or time.monotonic()
        ended = time.monotonic()
    assert first_byte is not None
    assert first_byte - started >= 0.15
    assert ended - first_byte >= 3 * 0.04 * 0.9, "three pauses between four content chunks"


def test_latency_ms_is_ttft_and_settable_at_runtime(control: MockControl, claude: anthropic.Anthropic) -> None:
    assert MockConfig(latency_ms=25).ttft_ms == 25
    control.configure(latency_ms=120, text="slow answer")
    try:
        started = time.monotonic()
        msg = claude.messages.create(model="m", max_tokens=5, messages=USER)
        assert time.monotonic() - started >= 0.12
        assert msg.content[0].text == "slow answer"  # type: ignore[union-attr]
    finally:
        control.configure(latency_ms=0, text=MockConfig().text)
    with pytest.raises(ValueError, match="cannot change"):
        control.configure(models=["x"])


@given(st.text(max_size=200), st.integers(min_value=1, max_value=12))
def test_split_text_keeps_every_character(text: str, pieces: int) -> None:
    parts = split_text(text, pieces)
    assert "".join(parts) == text
    assert len(parts) <= max(1, pieces)
    assert "".join(split_json(text)) == text


def test_parse_sse_framing() -> None:
    body = b'event: a\ndata: {"x": 1}\n\n: comment\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n'
    assert parse_sse(body) == [("a", '{"x": 1}'), (None, "line1\nline2"), (None, "[DONE]")]


def test_cli_help_teaches() -> None:
    result = CliRunner().invoke(cli_app, ["mock-llm", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    for needle in ("--port", "--latency-ms", "--scenario", "--record", "--expect-key", "/_mock/fail"):
        assert needle in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_cli_serves(tmp_path: Path) -> None:
    scenario = tmp_path / "turns.json"
    scenario.write_text(json.dumps([{"text": "scripted from the CLI"}]))
    port = _free_port()
    cmd = [sys.executable, "-c", "from agenttrail.cli.main import main; main()", "mock-llm"]
    args = ["--port", str(port), "--scenario", str(scenario), "--expect-key", "sk-cli", "--chunk-ms", "1"]
    proc = subprocess.Popen(
        [*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"}
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.head(url + "/", timeout=0.5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stderr.read().decode() if proc.stderr else "no output") from None
                time.sleep(0.05)
        client = anthropic.Anthropic(base_url=url, api_key="sk-cli", max_retries=0)
        msg = client.messages.create(model="m", max_tokens=5, messages=USER)
        assert msg.content[0].text == "scripted from the CLI"  # type: ignore[union-attr]
        with pytest.raises(anthropic.AuthenticationError):
            anthropic.Anthropic(base_url=url, api_key="sk-other", max_retries=0).messages.create(
                model="m", max_tokens=5, messages=USER
            )
    finally:
        proc.terminate()
        proc.wait(timeout=10)

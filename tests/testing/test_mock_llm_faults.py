"""Fault injection: what a gateway's retry, fallback and stream-relay tests rely on."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from agenttrail.testing import MockConfig, MockControl, run_in_thread
from agenttrail.testing.mock_config import DEFAULT_TEXT, Failure

USER: Any = [{"role": "user", "content": "hi"}]


def _ask(client: anthropic.Anthropic, model: str = "claude-a") -> str:
    msg = client.messages.create(model=model, max_tokens=10, messages=USER)
    return msg.content[0].text  # type: ignore[union-attr]


def _stream(client: anthropic.Anthropic) -> str:
    with client.messages.stream(model="claude-a", max_tokens=10, messages=USER) as s:
        return "".join(s.text_stream)


def _transport_error(exc: BaseException, *names: str) -> bool:
    # The SDKs ship their own httpx fork (httpx2), so its exceptions are matched by class name.
    return isinstance(exc, anthropic.APIConnectionError | openai.APIConnectionError) or type(exc).__name__ in names


def test_529_raises_overloaded_once(claude: anthropic.Anthropic, control: MockControl) -> None:
    control.fail(529)
    with pytest.raises(anthropic.OverloadedError) as err:
        _ask(claude)
    assert err.value.status_code == 529
    assert err.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert _ask(claude) == DEFAULT_TEXT, "count 1: the next request succeeds"


def test_per_model_failure_for_fallback(claude: anthropic.Anthropic, control: MockControl) -> None:
    control.fail(529, model="claude-a*", count=-1)
    for _ in range(2):
        with pytest.raises(anthropic.OverloadedError):
            _ask(claude, "claude-a-1")
    assert _ask(claude, "claude-b") == DEFAULT_TEXT
    assert len(control.failures()) == 1, "count -1 stays armed"
    control.clear_failures()
    assert _ask(claude, "claude-a-1") == DEFAULT_TEXT


def test_openai_500_with_headers(oai: openai.OpenAI, control: MockControl) -> None:
    control.fail(500, endpoint="chat", headers={"x-should-retry": "false", "retry-after": "7"})
    with pytest.raises(openai.InternalServerError) as err:
        oai.chat.completions.create(model="gpt-5", messages=USER)
    assert err.value.response.headers["x-should-retry"] == "false"
    assert err.value.response.headers["retry-after"] == "7"
    assert set(err.value.response.json()["error"]) == {"message", "type", "param", "code"}


def test_endpoint_filter(oai: openai.OpenAI, control: MockControl) -> None:
    control.fail(429, endpoint="chat")
    assert oai.responses.create(model="gpt-5", input="hi").output_text == DEFAULT_TEXT
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(model="gpt-5", messages=USER)


def test_models_endpoint_can_fail(oai: openai.OpenAI, control: MockControl) -> None:
    control.fail(503, endpoint="models")
    with pytest.raises(openai.InternalServerError):
        oai.models.list()
    assert oai.models.list().data


def test_garbled_stream_breaks_the_sdk_parser(claude: anthropic.Anthropic, control: MockControl) -> None:
    control.fail(mode="garbled")
    with pytest.raises(ValueError):  # json.JSONDecodeError is a ValueError
        _stream(claude)
    assert _stream(claude) == DEFAULT_TEXT


def test_garbled_body(oai: openai.OpenAI, control: MockControl, raw: httpx.Client) -> None:
    control.fail(mode="garbled", endpoint="chat")
    r = raw.post("/v1/chat/completions", headers={"authorization": "Bearer k"}, json={"model": "m", "messages": USER})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()


def test_disconnect_mid_stream(claude: anthropic.Anthropic, control: MockControl) -> None:
    control.fail(mode="disconnect", after_events=3)
    with pytest.raises(Exception) as err:
        _stream(claude)
    assert _transport_error(err.value, "RemoteProtocolError"), repr(err.value)
    assert _stream(claude) == DEFAULT_TEXT, "the server survives a dropped connection"


def test_disconnect_mid_body(oai: openai.OpenAI, control: MockControl) -> None:
    control.fail(mode="disconnect")
    with pytest.raises(openai.APIConnectionError):
        oai.embeddings.create(model="m", input="x")


def test_hang_until_client_timeout(mock_url: str, control: MockControl) -> None:
    control.fail(mode="hang")
    client = openai.OpenAI(base_url=mock_url + "/v1", api_key="k", max_retries=0, timeout=0.4)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.responses.create(model="gpt-5", input="hi")
    assert time.monotonic() - started < 3


def test_hang_mid_stream(mock_url: str, control: MockControl) -> None:
    control.fail(mode="hang", after_events=2)
    client = anthropic.Anthropic(base_url=mock_url, api_key="k", max_retries=0, timeout=0.4)
    with pytest.raises(Exception) as err:
        _stream(client)
    assert _transport_error(err.value, "ReadTimeout"), repr(err.value)


def test_stream_error_event_anthropic(claude: anthropic.Anthropic, control: MockControl) -> None:
    control.fail(529, mode="stream_error", message="Overloaded now")
    with pytest.raises(anthropic.APIStatusError) as err:
        _stream(claude)
    assert err.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded now"}  # type: ignore[index]


def test_stream_error_event_openai(oai: openai.OpenAI, control: MockControl) -> None:
    control.fail(500, mode="stream_error", endpoint="chat")
    with pytest.raises(openai.APIError):
        list(oai.chat.completions.create(model="m", messages=USER, stream=True))
    control.fail(500, mode="stream_error", endpoint="responses")
    events = list(oai.responses.create(model="m", input="hi", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None and events[-1].response.error.code == "server_error"


def test_stream_error_without_stream_is_a_status_error(claude: anthropic.Anthropic, control: MockControl) -> None:
    control.fail(529, mode="stream_error")
    with pytest.raises(anthropic.OverloadedError):
        _ask(claude)


def test_failures_armed_at_start_and_rearmed_by_reset() -> None:
    with run_in_thread(MockConfig(failures=[Failure(status=503, model="gpt-5")])) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-5", messages=USER)
        assert client.chat.completions.create(model="gpt-5", messages=USER).choices
        MockControl(url).reset()
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-5", messages=USER)


def test_bad_failure_rule_is_refused(control: MockControl) -> None:
    with pytest.raises(ValueError, match="mode"):
        control.fail(mode="explode")
    with pytest.raises(ValueError, match="endpoint"):
        control.fail(endpoint="nope")
    assert control.failures() == []


@pytest.mark.parametrize(
    ("path", "payload", "needle"),
    [
        ("/_mock/fail", {"status": "abc"}, "status must be a whole number, got 'abc'"),
        ("/_mock/fail", {"count": "x"}, "count must be a whole number, got 'x'"),
        ("/_mock/fail", {"after_events": 1.5}, "after_events must be a whole number, got 1.5"),
        ("/_mock/requests?since=abc", None, "since must be a whole number, got 'abc'"),
    ],
)
def test_control_mistakes_name_the_field(raw: httpx.Client, path: str, payload: Any, needle: str) -> None:
    # They answered "invalid literal for int() with base 10: 'abc'", naming nothing.
    r = raw.post(path, json=payload) if payload is not None else raw.get(path)
    assert r.status_code == 400 and r.json()["error"] == needle

"""Bad input and upstream failures get a clear error in the provider's shape and a recorded status,
never a 500 from the gateway's own code."""

from __future__ import annotations

import socket
from dataclasses import replace

import anthropic
import httpx
import openai
import pytest

MSG = [{"role": "user", "content": "hi"}]
A_BODY = {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": MSG}
O_BODY = {"model": "gpt-4o", "messages": MSG}


def _a_headers(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"}


def _o_headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "content-type": "application/json"}


def test_malformed_json_wrong_type_and_non_object(gw) -> None:
    r = httpx.post(gw.url + "/v1/messages", content=b'{"model": "x",', headers=_a_headers(gw.key))
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        content=b"model=x",
        headers={**_o_headers(gw.key), "content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]
    r = httpx.post(gw.url + "/v1/chat/completions", content=b"[1, 2]", headers=_o_headers(gw.key))
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    statuses = sorted(c["status"] for c in gw.calls())
    assert statuses == ["invalid_request"] * 3
    assert gw.upstream_requests() == []


def test_body_over_the_limit(make_gateway) -> None:
    gw = make_gateway(max_body_bytes=2000)
    big = dict(A_BODY, messages=[{"role": "user", "content": "x" * 5000}])
    r = httpx.post(gw.url + "/v1/messages", json=big, headers=_a_headers(gw.key))
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
    assert "2000" in r.json()["error"]["message"]
    assert [c["status"] for c in gw.calls()] == ["invalid_request"]


def test_model_the_key_may_not_use(gw) -> None:
    key = gw.new_key(allowed_models=["claude-haiku-4-5"])
    a = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        a.messages.create(**A_BODY)
    assert "claude-haiku-4-5" in str(e.value)
    assert a.messages.create(**dict(A_BODY, model="claude-haiku-4-5")).content
    assert sorted(c["status"] for c in gw.calls()) == ["ok", "refused"]


def test_upstream_5xx_is_relayed_and_recorded(gw) -> None:
    gw.mock("fail", {"status": 500, "count": 1, "message": "upstream exploded"})
    o = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0)
    with pytest.raises(openai.InternalServerError) as e:
        o.chat.completions.create(**O_BODY)
    assert "upstream exploded" in str(e.value)
    (row,) = gw.calls()
    assert (row["status"], row["http_status"]) == ("upstream_error", 500)
    assert "upstream exploded" in row["error"]


def test_the_provider_refusing_the_servers_credential_is_not_the_clients_401(gw) -> None:
    # Relayed as is, the upstream's 401 told the person their own (virtual) key was wrong.
    gw.mock("fail", {"status": 401, "count": 1, "message": "invalid x-api-key"})
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as e:
        a.messages.create(**A_BODY)
    assert e.value.status_code == 502 and e.value.response.headers["x-should-retry"] == "false"
    assert "refused the gateway's own credential" in str(e.value) and "ANTHROPIC_API_KEY" in str(e.value)
    gw.mock("fail", {"status": 401, "count": 1})
    r = httpx.post(gw.url + "/v1/chat/completions", json=dict(O_BODY, stream=True), headers=_o_headers(gw.key))
    assert r.status_code == 502 and "OPENAI_API_KEY on the server" in r.json()["error"]["message"]
    assert [(c["status"], c["http_status"]) for c in gw.calls()] == [("upstream_error", 401)] * 2


def test_upstream_timeout(make_gateway) -> None:
    gw = make_gateway(upstream_read_timeout_s=0.5)
    gw.mock("fail", {"mode": "hang", "count": 1})
    r = httpx.post(gw.url + "/v1/messages", json=A_BODY, headers=_a_headers(gw.key), timeout=10)
    assert r.status_code == 504 and r.json()["error"]["type"] == "api_error"
    assert "did not answer in time" in r.json()["error"]["message"]
    assert [c["status"] for c in gw.calls()] == ["upstream_timeout"]


def test_connection_refused(make_gateway, db_url) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    gw = make_gateway()
    gw.services.settings  # noqa: B018 - the fixture's settings; replace the upstream below
    dead = replace(gw.services.settings.openai, base_url=f"http://127.0.0.1:{port}/v1")
    gw.services.gateway.settings = replace(gw.services.settings, openai=dead)
    r = httpx.post(gw.url + "/v1/chat/completions", json=O_BODY, headers=_o_headers(gw.key))
    assert r.status_code == 502 and "cannot reach the openai upstream" in r.json()["error"]["message"]
    assert r.headers["x-should-retry"] == "true"
    assert [c["status"] for c in gw.calls()] == ["upstream_unreachable"]


@pytest.mark.parametrize("endpoint", ["messages", "chat", "responses"])
def test_garbled_stream_ends_with_a_provider_error(gw, endpoint) -> None:
    gw.mock("fail", {"mode": "garbled", "count": 1, "after_events": 2})
    if endpoint == "messages":
        a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
        with pytest.raises(anthropic.APIError) as e, a.messages.stream(**A_BODY) as s:
            "".join(s.text_stream)
    elif endpoint == "chat":
        o = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0)
        with pytest.raises(openai.APIError) as e:
            list(o.chat.completions.create(**O_BODY, stream=True))
    else:
        o = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0)
        with pytest.raises(openai.APIError) as e:
            list(o.responses.create(model="gpt-4o", input="hi", stream=True))
    assert "agenttrail gateway" in str(e.value)
    (row,) = gw.calls(expect=1)
    assert row["status"] == "upstream_bad_stream"


def test_client_disconnect_mid_stream_leaves_a_record(make_gateway) -> None:
    gw = make_gateway()
    httpx.post(gw.mock_url + "/_mock/config", json={"chunk_ms": 300}).raise_for_status()
    body = dict(A_BODY, stream=True)
    with httpx.stream("POST", gw.url + "/v1/messages", json=body, headers=_a_headers(gw.key)) as r:
        for line in r.iter_lines():
            if line.startswith("event: message_start"):
                break  # hang up right after the first event
    (row,) = gw.calls(expect=1)
    assert row["status"] == "client_disconnected"
    # The tokens seen so far: message_start's input and cache counts.
    assert (row["input_tokens"], row["cache_read_tokens"]) == (1200, 3000)


def test_claude_code_oddities_pass_untouched(gw) -> None:
    assert httpx.head(gw.url + "/").status_code == 200
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 50,
        "stream": True,
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "messages": [{"role": "system", "content": "odd but valid"}, {"role": "user", "content": "hi"}],
        "metadata": {"user_id": '{"device_id":"abc","session_id":"s-1"}'},
    }
    headers = {
        **_a_headers(gw.key),
        "anthropic-beta": "claude-code-20250219,oauth-2025-04-20",
        "x-claude-code-session-id": "cc-session-42",
        "x-agenttrail-tags": "ticket=PAY-1,ci",
    }
    r = httpx.post(gw.url + "/v1/messages?beta=true", json=body, headers=headers)
    assert r.status_code == 200 and "message_stop" in r.text
    (up,) = gw.upstream_requests()
    assert up["body"] == body and up["query"] in ("beta=true", {"beta": "true"})
    h = {k.lower(): v for k, v in up["headers"].items()}
    assert h["anthropic-beta"] == "claude-code-20250219,oauth-2025-04-20"
    assert not any(k.startswith("x-agenttrail") for k in h)
    (row,) = gw.calls()
    assert row["agent_session_id"] == "cc-session-42"
    assert '"ticket":"PAY-1"' in row["tags"].replace(" ", "")


def test_upstream_base_url_with_a_path_prefix(make_gateway, mock_url) -> None:
    gw = make_gateway()
    s = gw.services.settings
    gw.services.gateway.settings = replace(
        s,
        anthropic=replace(s.anthropic, base_url=mock_url + "/corp/anthropic"),
        openai=replace(s.openai, base_url=mock_url + "/corp/openai/v1"),
    )
    anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0).messages.create(**A_BODY)
    openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0).chat.completions.create(**O_BODY)
    paths = sorted(r["path"] for r in gw.upstream_requests())
    assert paths == ["/corp/anthropic/v1/messages", "/corp/openai/v1/chat/completions"]


@pytest.mark.parametrize("endpoint", ["messages", "chat"])
def test_an_upstream_error_event_mid_stream_is_relayed_once_and_recorded(gw, endpoint) -> None:
    # An overloaded_error (Anthropic) or an error chunk (Chat Completions) in a 200 stream: the client
    # got the provider's own error event, then a second one from the gateway, and the record kept only
    # "the upstream stream ended before its final event", losing what the provider said.
    gw.mock("fail", {"mode": "stream_error", "status": 529, "count": 1, "message": "Overloaded right now"})
    if endpoint == "messages":
        r = httpx.post(gw.url + "/v1/messages", json=dict(A_BODY, stream=True), headers=_a_headers(gw.key))
        assert r.text.count("event: error") == 1
    else:
        r = httpx.post(gw.url + "/v1/chat/completions", json=dict(O_BODY, stream=True), headers=_o_headers(gw.key))
        assert r.text.count('"error"') == 1
    assert "Overloaded right now" in r.text and "agenttrail gateway" not in r.text
    (row,) = gw.calls(expect=1)
    assert row["status"] == "upstream_error"
    assert "Overloaded right now" in row["error"]


@pytest.mark.parametrize("endpoint", ["messages", "chat", "responses"])
def test_a_cut_off_json_answer_is_a_provider_error_not_broken_json(gw, endpoint) -> None:
    # The upstream's 200 with half a JSON body was relayed as it was: the SDKs raised a bare
    # JSONDecodeError from their parser instead of an API error a person can read.
    gw.mock("fail", {"mode": "garbled", "count": 1})
    if endpoint == "messages":
        a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as ae:
            a.messages.create(**A_BODY)
        status, text = ae.value.status_code, str(ae.value)
    else:
        o = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as oe:
            if endpoint == "chat":
                o.chat.completions.create(**O_BODY)
            else:
                o.responses.create(model="gpt-4o", input="hi")
        status, text = oe.value.status_code, str(oe.value)
    assert status == 502 and "not JSON" in text
    (row,) = gw.calls()
    assert (row["status"], row["http_status"]) == ("upstream_bad_body", 200)


def test_secrets_in_what_a_call_record_keeps_are_redacted(gw) -> None:
    # The gateway stores no prompt, but a call's row keeps the upstream's error message (which may
    # quote the request), the client's tags header and its user agent: all were stored as sent.
    ghp = "ghp_" + "R4nd0mT0k3nV4lu3ABCDEFGHIJKLMNOPQRST"
    slack = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
    aws = "AKIAIOSFODNN7EXAMPL3"
    gw.mock("fail", {"status": 400, "count": 1, "message": f"invalid content: {ghp} in messages[0]"})
    headers = {**_a_headers(gw.key), "x-agenttrail-tags": f"ticket=PAY-1,token={slack}", "user-agent": f"tool {aws}"}
    r = httpx.post(gw.url + "/v1/messages", json=A_BODY, headers=headers)
    assert r.status_code == 400 and ghp in r.text  # the client still gets the provider's answer as it was
    (row,) = gw.calls()
    stored = f"{row['error']} {row['tags']} {row['client']}"
    for secret in (ghp, slack, aws):
        assert secret not in stored
    assert "[REDACTED:github_token]" in row["error"] and "PAY-1" in row["tags"]
    assert "[REDACTED:aws_access_key]" in row["client"]

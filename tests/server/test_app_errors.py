"""An unknown path or a wrong method is a JSON 404/405 a client can read, in the provider's shape under /v1/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from agenttrail.config import load_settings
from agenttrail.server.app import build_services, create_app


@pytest.fixture
def client(sqlite_url: str, home: str) -> Iterator[TestClient]:
    settings = load_settings(env={"AGENTTRAIL_HOME": home}, db=sqlite_url)
    with TestClient(create_app(settings, services=build_services(settings))) as c:
        yield c


def test_unknown_paths_are_json_404s(client: TestClient) -> None:
    r = client.post("/v1/messages/batches", json={})
    assert r.status_code == 404 and r.json()["type"] == "error"
    assert r.json()["error"] == {
        "type": "not_found_error",
        "message": "agenttrail has no endpoint POST /v1/messages/batches",
    }
    r = client.get("/v1/models/gpt-4o")
    assert r.status_code == 404 and r.json()["error"]["message"] == "agenttrail has no endpoint GET /v1/models/gpt-4o"
    r = client.get("/api/v1/nope")
    assert r.status_code == 404 and r.json() == {
        "error": {"message": "agenttrail has no endpoint GET /api/v1/nope", "status": 404}
    }


def test_a_wrong_method_is_a_json_405_naming_the_right_one(client: TestClient) -> None:
    r = client.get("/v1/messages")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["message"] == "/v1/messages takes POST, not GET"
    r = client.delete("/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
    r = client.post("/healthz")
    assert r.status_code == 405 and r.json()["error"]["status"] == 405 and "GET" in r.json()["error"]["message"]


def test_a_base_url_with_v1_too_often_or_too_few_is_named(client: TestClient) -> None:
    r = client.post("/chat/completions", json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
    assert "base URL lacks /v1 (ANTHROPIC_BASE_URL=http://HOST:PORT, OPENAI_BASE_URL=" in r.json()["error"]["message"]
    r = client.post("/v1/v1/messages", json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    assert "ends in /v1 once too often" in r.json()["error"]["message"]

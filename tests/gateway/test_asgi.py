"""The gateway's endpoints served ahead of Starlette answer as Starlette did: a bug is a 500 in the
provider's shape, another method is Starlette's 405, and the rest of the server is unchanged."""

from __future__ import annotations

from typing import Any, cast

import httpx
import pytest

from agenttrail.gateway.asgi import GatewayASGI

A_BODY = {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
O_BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


class BrokenPolicy:
    async def admit(self, call: Any) -> None:
        raise RuntimeError("a bug in a policy")

    async def settle(self, call: Any) -> None:
        return None


def test_a_bug_is_a_500_in_the_provider_shape(gw) -> None:
    gw.services.gateway.policy = BrokenPolicy()
    a = httpx.post(gw.url + "/v1/messages", json=A_BODY, headers={"x-api-key": gw.key})
    assert a.status_code == 500
    assert a.json() == {
        "type": "error",
        "error": {"type": "api_error", "message": "agenttrail internal error: RuntimeError"},
    }
    o = httpx.post(gw.url + "/v1/chat/completions", json=O_BODY, headers={"authorization": f"Bearer {gw.key}"})
    assert o.status_code == 500
    assert o.json() == {
        "error": {
            "message": "agenttrail internal error: RuntimeError",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    assert httpx.get(gw.url + "/healthz").status_code == 200


def test_other_methods_get_starlettes_answers(gw) -> None:
    r = httpx.get(gw.url + "/v1/messages", headers={"x-api-key": gw.key})
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = httpx.request("HEAD", gw.url + "/v1/models", headers={"authorization": f"Bearer {gw.key}"})
    assert r.status_code == 200
    assert httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {gw.key}"}).json()["data"]


@pytest.mark.parametrize(
    ("method", "path", "root_path", "served"),
    [
        ("POST", "/v1/messages", "", True),
        ("POST", "/v1/messages/count_tokens", "", True),
        ("POST", "/v1/chat/completions", "", True),
        ("POST", "/v1/responses", "", True),
        ("POST", "/v1/embeddings", "", True),
        ("GET", "/v1/models", "", True),
        ("GET", "/v1/messages", "", False),
        ("HEAD", "/v1/models", "", False),
        ("POST", "/v1/messages/", "", False),
        ("POST", "/api/v1/ingest", "", False),
        ("POST", "/gw/v1/messages", "/gw", False),
    ],
)
def test_which_requests_take_the_bare_path(method: str, path: str, root_path: str, served: bool) -> None:
    front = GatewayASGI(cast(Any, None))  # matching does not touch the gateway
    assert (front.match({"method": method, "path": path, "root_path": root_path}) is not None) is served

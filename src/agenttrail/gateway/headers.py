"""Which headers cross the gateway. Behaviour-changing ones pass; credentials and hop-by-hop do not."""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# Never forwarded upstream: the client's (virtual) credential and agenttrail's own headers.
CLIENT_ONLY = frozenset({"authorization", "x-api-key", "api-key", "accept-encoding", "cookie"})
# Not copied back: the body is re-framed by our server; encoding is identity (we ask for it).
UPSTREAM_ONLY = frozenset({"content-encoding", "set-cookie", "alt-svc", "server", "date"})


def upstream_headers(client_headers: Iterable[tuple[str, str]], auth: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in client_headers:
        lk = k.lower()
        if lk in HOP_BY_HOP or lk in CLIENT_ONLY or lk.startswith("x-agenttrail-"):
            continue
        out[lk] = v
    out["accept-encoding"] = "identity"
    out.update(auth)
    return out


def client_headers(upstream: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, v in upstream if k.lower() not in HOP_BY_HOP and k.lower() not in UPSTREAM_ONLY}

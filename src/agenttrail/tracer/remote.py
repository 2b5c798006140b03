"""The client side of a server: the defaults `agenttrail login` stores, and the sessions API.

The defaults live in `$AGENTTRAIL_HOME/config` (TOML, mode 0600: it holds the engineer's key). Flags
win over `AGENTTRAIL_SERVER` / `AGENTTRAIL_KEY` / `AGENTTRAIL_PROJECT`, which win over the file. The
sandbox hides `$AGENTTRAIL_HOME`, and `scrub_env` removes `AGENTTRAIL_KEY`, so the agent sees neither.
"""

from __future__ import annotations

import contextlib
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

CONFIG_NAME = "config"
SESSIONS_PATH = "/api/v1/sessions"


class RemoteError(Exception):
    """The server answered, and said no (a message a person can act on)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RemoteUnavailable(RemoteError):
    """The server could not be reached, or failed (5xx): worth trying again later."""


class NoSessionsApi(RemoteError):
    """The server has no sessions API (an older server, or not an agenttrail server)."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    server: str | None = None
    key: str | None = None
    project: str | None = None

    @property
    def has_server(self) -> bool:
        return bool(self.server and self.key)


def config_path(home: str | os.PathLike[str]) -> Path:
    return Path(home) / CONFIG_NAME


def load_client_config(home: str | os.PathLike[str]) -> ClientConfig:
    path = config_path(home)
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        return ClientConfig()
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise RemoteError(f"cannot read {path}: {e}; run `agenttrail login` again") from None
    return ClientConfig(
        server=_str(raw.get("server")),
        key=_str(raw.get("key")),
        project=_str(raw.get("project")),
    )


def _str(v: Any) -> str | None:
    return str(v) if isinstance(v, str) and v else None


def save_client_config(home: str | os.PathLike[str], cfg: ClientConfig) -> Path:
    """Write the defaults atomically, readable by the owner only (it holds the engineer's key)."""
    path = config_path(home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = ["# Written by `agenttrail login`: defaults for `agenttrail run`, `sessions` and `sync`."]
    for name in ("server", "key", "project"):
        value = getattr(cfg, name)
        if value:
            lines.append(f"{name} = {json.dumps(value)}")  # a JSON string is a valid TOML basic string
    tmp = path.with_name(f".{CONFIG_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # O_CREAT's mode is masked by the umask; be explicit
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def remove_client_config(home: str | os.PathLike[str]) -> bool:
    try:
        config_path(home).unlink()
    except FileNotFoundError:
        return False
    return True


def resolve_client_config(
    home: str | os.PathLike[str],
    env: Mapping[str, str],
    *,
    server: str | None = None,
    key: str | None = None,
    project: str | None = None,
) -> ClientConfig:
    """Flags, then environment, then the login file."""
    stored = load_client_config(home)
    cfg = ClientConfig(
        server=server or env.get("AGENTTRAIL_SERVER") or stored.server,
        key=key or env.get("AGENTTRAIL_KEY") or stored.key,
        project=project or env.get("AGENTTRAIL_PROJECT") or stored.project,
    )
    if cfg.server:
        cfg = replace(cfg, server=normalise_server_url(cfg.server))
    return cfg


def normalise_server_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise RemoteError(f"the server URL must start with http:// or https://, got {url!r}")
    return url


@dataclass(frozen=True, slots=True)
class RemoteSession:
    session_id: str
    key: str  # the session-scoped key: valid only while the session lives
    team: str | None = None
    project: str | None = None
    engineer: str | None = None
    expires_at: str | None = None


class SessionsClient:
    """`/api/v1/sessions` on an agenttrail server, authenticated by the engineer's key."""

    def __init__(
        self, server_url: str, key: str, *, client: httpx.Client | None = None, timeout_s: float = 10.0
    ) -> None:
        self.server_url = normalise_server_url(server_url)
        self._key = key
        self._own = client is None
        self._client = client or httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)))

    def close(self) -> None:
        if self._own:
            self._client.close()

    def __enter__(self) -> SessionsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        url = self.server_url + path
        headers = {"Authorization": f"Bearer {self._key}", "User-Agent": "agenttrail-run"}
        try:
            resp = self._client.request(method, url, headers=headers, **kw)
        except httpx.TransportError as e:
            raise RemoteUnavailable(f"cannot reach {self.server_url}: {e or type(e).__name__}") from None
        if resp.is_success:
            try:
                return resp.json()
            except ValueError:
                raise NoSessionsApi(
                    f"{url} did not answer with JSON; is {self.server_url} an agenttrail server?", resp.status_code
                ) from None
        message = _message(resp)
        if resp.status_code == 404 and _code(resp) == "session_not_found":
            raise RemoteError(message, 404)
        if resp.status_code in (404, 405):
            raise NoSessionsApi(f"{url}: this server has no sessions API (HTTP {resp.status_code})", resp.status_code)
        if resp.status_code in (401, 403):
            raise RemoteError(
                f"the server refused the key (HTTP {resp.status_code}: {message}); check it with `agenttrail login`",
                resp.status_code,
            )
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise RemoteUnavailable(f"{url} failed (HTTP {resp.status_code}: {message})", resp.status_code)
        raise RemoteError(f"{url}: HTTP {resp.status_code}: {message}", resp.status_code)

    def start(
        self, session_id: str, *, project: str | None = None, info: Mapping[str, Any] | None = None
    ) -> RemoteSession:
        """Register the session; the server answers with a session-scoped key for the agent."""
        body: dict[str, Any] = {"session_id": session_id, **(info or {})}
        if project:
            body["project"] = project
        data = self._request("POST", SESSIONS_PATH, json=body)
        if not isinstance(data, dict) or not data.get("key") or not data.get("session_id"):
            raise RemoteError(f"{self.server_url}{SESSIONS_PATH} answered without a session key: {data!r:.200}")
        return RemoteSession(
            session_id=str(data["session_id"]),
            key=str(data["key"]),
            team=data.get("team"),
            project=data.get("project"),
            engineer=data.get("engineer"),
            expires_at=data.get("expires_at"),
        )

    def end(self, session_id: str) -> None:
        """Revoke the session's key: the agent's calls stop working once the session is over."""
        self._request("POST", f"{SESSIONS_PATH}/{session_id}/end")

    def list(self, limit: int = 50) -> dict[str, Any]:
        data = self._request("GET", SESSIONS_PATH, params={"limit": limit})
        if not isinstance(data, dict):
            raise RemoteError(f"unexpected answer from {self.server_url}{SESSIONS_PATH}: {data!r:.200}")
        return data

    def show(self, session_id: str) -> dict[str, Any]:
        data = self._request("GET", f"{SESSIONS_PATH}/{session_id}")
        if not isinstance(data, dict):
            raise RemoteError(f"unexpected answer for session {session_id}: {data!r:.200}")
        return data


def _code(resp: httpx.Response) -> str | None:
    try:
        err = resp.json().get("error")
    except (ValueError, AttributeError):
        return None
    return str(err.get("code")) if isinstance(err, dict) and err.get("code") else None


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:200] or resp.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(body)[:200]

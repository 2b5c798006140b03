"""The environment that points every agent at the gateway with a session-scoped key.

All agents' variables are set whatever the command, because agents start other agents and tools.
Variables the user may have set that would bypass the gateway (a real Anthropic bearer token,
Bedrock/Vertex switches, signal-specific OTLP endpoints) are removed.

Codex ignores OPENAI_BASE_URL and reads a custom provider from `$CODEX_HOME/config.toml`. The session
gets a private CODEX_HOME: the user's config.toml copied with `model_provider` replaced and an
`agenttrail` provider added, plus AGENTS.md. Never auth.json: it may hold a real credential, and the
agent must not see one. The user's ~/.codex is only read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

PROVIDER = "agenttrail"
SESSION_ATTRIBUTE = "agenttrail.session_id"
# Would send traffic or credentials around the gateway, or the telemetry elsewhere.
_UNSET = (
    "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "ANTHROPIC_BEDROCK_BASE_URL",
    "ANTHROPIC_VERTEX_BASE_URL", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
)  # fmt: skip
_TABLE = re.compile(r"^\s*\[")
_MODEL_PROVIDER = re.compile(r"^\s*model_provider\s*=")


@dataclass(frozen=True, slots=True)
class GatewayEnv:
    set: dict[str, str]  # add to the (scrubbed) environment
    unset: tuple[str, ...] = ()  # remove from it
    codex_home: str | None = None
    files: tuple[str, ...] = field(default_factory=tuple)  # files written for the session

    def apply(self, env: Mapping[str, str]) -> dict[str, str]:
        out = {k: v for k, v in env.items() if k not in self.unset}
        out.update(self.set)
        return out


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def codex_config(user_toml: str | None, base_url: str, env_key: str = "CODEX_API_KEY") -> str:
    """The session's config.toml: the user's settings, but the model provider is the gateway."""
    name = PROVIDER
    kept: list[str] = []
    if user_toml:
        try:
            existing = tomllib.loads(user_toml)
        except tomllib.TOMLDecodeError:
            existing, user_toml = {}, None  # unreadable: start from ours alone
        if name in (existing.get("model_providers") or {}):
            name = f"{PROVIDER}_session"
        in_table = False
        for line in (user_toml or "").splitlines():
            in_table = in_table or bool(_TABLE.match(line))
            if not in_table and _MODEL_PROVIDER.match(line):
                continue  # ours replaces the user's top-level choice
            kept.append(line)
    parts = [
        "# Written by agenttrail for one session: the user's config with the gateway as model provider.",
        f"model_provider = {_toml_str(name)}",
        *kept,
        "",
        f"[model_providers.{name}]",
        f"name = {_toml_str('agenttrail gateway')}",
        f"base_url = {_toml_str(base_url)}",
        f"env_key = {_toml_str(env_key)}",
        'wire_api = "responses"',
        "",
    ]
    text = "\n".join(parts)
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return codex_config(None, base_url, env_key)
    return text


def prepare_codex_home(
    private_dir: str | os.PathLike[str], base_url: str, user_codex_home: str
) -> tuple[str, list[str]]:
    """Create the session's private CODEX_HOME; returns it and the files written."""
    home = Path(private_dir, "codex-home")
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    user_config = Path(user_codex_home, "config.toml")
    try:
        user_toml = user_config.read_text() if user_config.is_file() else None
    except OSError:
        user_toml = None
    written = [str(home / "config.toml")]
    (home / "config.toml").write_text(codex_config(user_toml, base_url))
    agents_md = Path(user_codex_home, "AGENTS.md")
    if agents_md.is_file():
        shutil.copyfile(agents_md, home / "AGENTS.md")  # the user's standing instructions: not a secret
        written.append(str(home / "AGENTS.md"))
    return str(home), written


def gateway_env(
    *,
    server_url: str,
    key: str,
    session_id: str,
    private_dir: str | os.PathLike[str],
    env: Mapping[str, str],
    home: str,
    otel: bool = True,
    otel_interval_ms: int = 10_000,
) -> GatewayEnv:
    """Everything an agent needs to talk only to the gateway, as this session, with `key`."""
    server = server_url.rstrip("/")
    user_codex_home = env.get("CODEX_HOME") or os.path.join(home, ".codex")
    codex_home, files = prepare_codex_home(private_dir, f"{server}/v1", user_codex_home)
    values = {
        "AGENTTRAIL_SESSION_ID": session_id,
        # Claude Code and the Anthropic SDKs (they append /v1/messages themselves).
        "ANTHROPIC_BASE_URL": server,
        "ANTHROPIC_API_KEY": key,
        # OpenAI SDKs and tools built on them; OPENAI_API_BASE for older ones (litellm, aider).
        "OPENAI_BASE_URL": f"{server}/v1",
        "OPENAI_API_BASE": f"{server}/v1",
        "OPENAI_API_KEY": key,
        # Codex: the key its custom provider reads, and the private home holding that provider.
        "CODEX_API_KEY": key,
        "CODEX_HOME": codex_home,
    }
    if otel:
        attrs = [
            a
            for a in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",")
            if a and not a.startswith(SESSION_ATTRIBUTE + "=")
        ]
        values |= {
            "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"{server}/otlp",
            "OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key={quote(key, safe='')}",
            "OTEL_RESOURCE_ATTRIBUTES": ",".join([*attrs, f"{SESSION_ATTRIBUTE}={quote(session_id, safe='')}"]),
            "OTEL_METRIC_EXPORT_INTERVAL": str(otel_interval_ms),
            "OTEL_LOGS_EXPORT_INTERVAL": str(max(otel_interval_ms // 2, 1000)),
        }
    return GatewayEnv(set=values, unset=_UNSET, codex_home=codex_home, files=tuple(files))

"""Run the real Claude Code and Codex CLIs against mock-llm, offline, in a private HOME / CODEX_HOME.

The CLIs are installed from npm (versions pinned in tests/agent_clis.json) into a folder outside the
repository: `$AGENTTRAIL_AGENT_CLIS`, else /work/agent-clis, holding `node_modules/.bin/claude` and
`node_modules/.bin/codex`. Install them with:

    npm install --prefix DIR @anthropic-ai/claude-code@VERSION @openai/codex@VERSION

When they (or agenttrail.testing.mock_llm) are missing, tests skip saying so; under
AGENTTRAIL_TEST_STRICT=1 (CI) they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

PINS_FILE = Path(__file__).resolve().parents[1] / "agent_clis.json"
DEFAULT_DIR = Path("/work/agent-clis")
STRICT = os.environ.get("AGENTTRAIL_TEST_STRICT") == "1"
RUN_TIMEOUT_S = 180


def need(condition: bool, reason: str) -> None:
    """Skip when a real part is missing, or fail in strict mode (CI)."""
    if condition:
        return
    if STRICT:
        pytest.fail(f"required in CI (AGENTTRAIL_TEST_STRICT=1) but missing: {reason}")
    pytest.skip(reason)


def pinned_versions() -> dict[str, str]:
    return dict(json.loads(PINS_FILE.read_text()))


def clis_dir() -> Path:
    configured = os.environ.get("AGENTTRAIL_AGENT_CLIS")
    return Path(configured) if configured else DEFAULT_DIR


@dataclass(frozen=True)
class AgentClis:
    claude: Path
    codex: Path
    versions: dict[str, str]


def _installed_version(root: Path, package: str) -> str | None:
    try:
        return str(json.loads((root / "node_modules" / package / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def find_agent_clis() -> tuple[AgentClis | None, str]:
    """The installed CLIs, or None and why not."""
    root = clis_dir()
    claude = root / "node_modules" / ".bin" / "claude"
    codex = root / "node_modules" / ".bin" / "codex"
    pins = pinned_versions()
    install = f"npm install --prefix {root} " + " ".join(f"{p}@{v}" for p, v in pins.items())
    for exe in (claude, codex):
        if not exe.exists():
            return None, f"{exe} not found (set AGENTTRAIL_AGENT_CLIS, or run: {install})"
    if shutil.which("node") is None:
        return None, "node is not on PATH (the codex launcher needs it)"
    installed = {p: _installed_version(root, p) for p in pins}
    wrong = {p: v for p, v in installed.items() if v != pins[p]}
    if wrong:
        return None, f"installed {wrong} differ from the pins in {PINS_FILE.name} {pins} (run: {install})"
    return AgentClis(claude=claude, codex=codex, versions=pins), ""


def require_agent_clis() -> AgentClis:
    clis, reason = find_agent_clis()
    need(clis is not None, reason)
    assert clis is not None
    return clis


def require_mock_llm() -> Any:
    try:
        from agenttrail.testing import mock_llm
    except ImportError as e:
        need(False, f"agenttrail.testing.mock_llm is not available: {e}")
        raise
    return mock_llm


def _base_env(home: Path, tmpdir: Path) -> dict[str, str]:
    """A clean environment: nothing from the outer agent session, no network beyond the mock."""
    tmpdir.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
    }
    for var in ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE"):
        if var in os.environ:
            env[var] = os.environ[var]
    return env


def claude_env(home: Path, base_url: str, tmpdir: Path, **extra: str) -> dict[str, str]:
    env = _base_env(home, tmpdir)
    env.update(
        {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "sk-ant-test-agenttrail",
            "IS_SANDBOX": "1",  # lets --dangerously-skip-permissions run as root
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        }
    )
    env.update(extra)
    return env


def run_claude(clis: AgentClis, cwd: Path, env: dict[str, str], prompt: str) -> dict[str, Any]:
    """`claude -p PROMPT --output-format json`; returns its final result object."""
    proc = subprocess.run(
        [str(clis.claude), "-p", prompt, "--dangerously-skip-permissions", "--output-format", "json"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"claude failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def write_codex_config(codex_home: Path, base_url: str, model: str, otel: str = "") -> None:
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "mock"\n'
        "[model_providers.mock]\n"
        'name = "mock"\n'
        f'base_url = "{base_url}/v1"\n'
        'env_key = "MOCK_OPENAI_KEY"\n'
        'wire_api = "responses"\n' + otel
    )


def codex_env(home: Path, codex_home: Path, tmpdir: Path) -> dict[str, str]:
    env = _base_env(home, tmpdir)
    env.update({"CODEX_HOME": str(codex_home), "MOCK_OPENAI_KEY": "sk-test-agenttrail"})
    return env


def run_codex(clis: AgentClis, cwd: Path, env: dict[str, str], prompt: str) -> list[dict[str, Any]]:
    """`codex exec --json PROMPT` with stdin closed; returns its JSONL events."""
    proc = subprocess.run(
        [str(clis.codex), "exec", "-s", "workspace-write", "--skip-git-repo-check", "--json", prompt],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, f"codex failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    events = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def git_project(path: Path, remote: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git = ["git", "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "init"], cwd=path, check=True)
    subprocess.run([*git, "remote", "add", "origin", remote], cwd=path, check=True)
    return path


@dataclass
class Captured:
    path: str
    content_type: str
    headers: dict[str, str]
    body: bytes


@dataclass
class OtlpSink:
    url: str
    requests: list[Captured] = field(default_factory=list)

    def bodies(self, signal: str) -> list[Captured]:
        return [r for r in self.requests if r.path.rstrip("/").endswith(f"/v1/{signal}")]


@contextmanager
def otlp_sink() -> Iterator[OtlpSink]:
    """A bare OTLP/HTTP endpoint that keeps what it is sent (the receiver under test is the decoder)."""
    sink = OtlpSink(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            sink.requests.append(
                Captured(
                    self.path,
                    self.headers.get("content-type", ""),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="otlp-sink", daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

"""`agenttrail login` as a new user meets it: a wrong key, a URL that is not the server's root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agenttrail.testing.mock_llm import MockConfig, run_in_thread

KEY = "sk-at-" + "k" * 40


def login(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTTRAIL_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "agenttrail", "login", *args], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.fixture
def not_agenttrail() -> str:
    """A server that answers, but is not agenttrail (the fake provider: no /api/v1/sessions)."""
    with run_in_thread(MockConfig()) as url:
        yield url


def test_a_server_without_the_sessions_api_is_refused_not_stored(tmp_path: Path, not_agenttrail: str) -> None:
    # It warned "this server has no sessions API (HTTP 404); storing the defaults anyway" and logged in:
    # `agenttrail run` then failed against it later, far from the mistake.
    p = login(tmp_path, "--server", not_agenttrail, "--key", KEY)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "not an agenttrail server" in p.stderr and "--no-verify" in p.stderr
    assert not (tmp_path / "config").exists()
    assert login(tmp_path, "--server", not_agenttrail, "--key", KEY, "--no-verify").returncode == 0


def test_the_openai_base_url_is_taken_as_the_servers_root(tmp_path: Path, not_agenttrail: str) -> None:
    # OPENAI_BASE_URL is http://gateway:4100/v1; pasted as --server it became …/v1/api/v1/sessions.
    p = login(tmp_path, "--server", not_agenttrail + "/v1/", "--key", KEY, "--no-verify")
    assert p.returncode == 0, p.stderr
    assert f"logged in to {not_agenttrail} " in p.stdout
    assert "/v1" not in (tmp_path / "config").read_text().split("server", 1)[1].splitlines()[0]


def test_a_refused_key_says_what_to_do_not_to_run_login_again(tmp_path: Path) -> None:
    # It ended "…; check it with `agenttrail login`", said to someone running `agenttrail login`.
    import http.server
    import threading

    class Refuses(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"error": {"message": "unknown virtual key sk-at-kkkkkk\\u2026"}}'
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        p = login(tmp_path, "--server", f"http://127.0.0.1:{server.server_port}", "--key", KEY)
    finally:
        server.shutdown()
    assert p.returncode == 1 and "unknown virtual key" in p.stderr
    assert "`agenttrail login`" not in p.stderr and "agenttrail key list" in p.stderr
    assert not (tmp_path / "config").exists()

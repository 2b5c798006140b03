"""`agenttrail serve` and `mock-llm` refuse arguments they cannot use before starting anything."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agenttrail", *args], capture_output=True, text=True, timeout=60)


def test_an_unknown_log_level_is_one_line(home: str) -> None:
    p = cli("serve", "--log-level", "loud", "--port", "0")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "--log-level must be one of debug, info, warning, error, got 'loud'" in p.stderr


@pytest.mark.parametrize("command", ["serve", "mock-llm"])
@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_refused(home: str, command: str, port: str) -> None:
    # 99999 was taken: uvicorn then listened on some other port while saying 99999.
    p = cli(command, "--port", port)
    assert p.returncode == 2 and "Invalid value for '--port'" in p.stderr


def test_help_names_what_serve_runs(home: str) -> None:
    p = cli("serve", "--help")
    assert p.returncode == 0 and "OTLP" in p.stdout
    assert "dashboard" not in p.stdout  # there is none: GET /ui is a 404


@pytest.mark.parametrize("command", ["serve", "mock-llm"])
def test_a_port_in_use_is_one_line_before_anything_starts(home: str, command: str) -> None:
    # It printed "agenttrail serving on http://127.0.0.1:P" (serve also migrated a new database), then
    # uvicorn's "[Errno 98] error while attempting to bind …" and exit status 3.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = str(s.getsockname()[1])
        p = cli(command, "--port", port)
    assert p.returncode in (1, 2) and "Traceback" not in p.stderr
    assert f"127.0.0.1:{port} is in use" in p.stderr.replace("\n", " ")
    assert "serving on" not in p.stdout and "listening on" not in p.stderr


def test_mock_llm_fail_that_is_not_json_says_what_it_takes(home: str) -> None:
    p = cli("mock-llm", "--fail", "status=529", "--port", "0")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--fail takes a JSON object" in p.stderr.replace("\n", " ")


@pytest.mark.parametrize(
    ("command", "example"),
    [
        (("serve",), "agenttrail serve --host 0.0.0.0 --db postgresql://"),
        (("key", "create"), "agenttrail key create --team payments --engineer ana@acme.com"),
        (("budget", "set"), "agenttrail budget set --team payments --usd 500 --period month"),
    ],
)
def test_help_of_the_commands_a_new_user_starts_with_shows_examples(command: tuple[str, ...], example: str) -> None:
    # Their --help listed the options and nothing else: no command line to start from.
    p = subprocess.run(
        [sys.executable, "-m", "agenttrail", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert p.returncode == 0 and "Examples" in p.stdout and example in p.stdout


def test_the_first_serve_on_a_fresh_home_is_not_a_page_of_migration_logs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # README's first command printed alembic's thirteen INFO lines ("Context impl SQLiteImpl.", "Will
    # assume non-transactional DDL.", one per migration) before saying where it serves.
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "AGENTTRAIL_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env.pop("AGENTTRAIL_DATABASE_URL", None)
    env.pop("AGENTTRAIL_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agenttrail", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert f"agenttrail serving on http://127.0.0.1:{port}" in out
    assert "alembic" not in out and "Running upgrade" not in out

"""`agenttrail mock-llm`: run the fake Anthropic + OpenAI provider in the foreground."""

from __future__ import annotations

import json
from pathlib import Path

import typer

HELP = """Run a fake Anthropic + OpenAI provider that speaks the real wire
format, streaming and not, with fixed usage. Use it instead of a real provider
in tests, demos and benchmarks.

[bold]Point clients at it[/bold]

  ANTHROPIC_BASE_URL=http://127.0.0.1:4200 ANTHROPIC_API_KEY=x claude -p hi

  OpenAI(base_url="http://127.0.0.1:4200/v1", api_key="x")

Endpoints, also under any path prefix: POST /v1/messages,
/v1/messages/count_tokens, /v1/chat/completions, /v1/responses,
/v1/embeddings; GET /v1/models.

[bold]Steer it while it runs[/bold] (control endpoints, no key needed)

  [dim]# every request received, with headers and body[/dim]
  curl localhost:4200/_mock/requests

  [dim]# the next request for a claude-* model gets a 529[/dim]
  curl localhost:4200/_mock/fail -d '{"status":529,"model":"claude-*"}'

  [dim]# modes: status, garbled, hang, disconnect, stream_error[/dim]
  curl localhost:4200/_mock/fail -d '{"mode":"disconnect"}'

  curl -XPOST localhost:4200/_mock/reset

[bold]Script the answers[/bold] with --scenario FILE (JSON or TOML):

  {"cursor": "history", "turns": [
    {"tool": "Write", "input": {"file_path": "a.py", "content": "1"}},
    {"text": "Created a.py."}]}

Full reference: docs/mock-llm.md.
"""


def register(app: typer.Typer) -> None:
    @app.command("mock-llm", help=HELP, rich_help_panel="Testing")
    def mock_llm(
        host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
        port: int = typer.Option(4200, min=0, max=65535, help="Port to listen on."),
        latency_ms: float | None = typer.Option(None, help="Shorthand for --ttft-ms: wait this long before answering."),
        ttft_ms: float = typer.Option(0.0, help="Time to first byte of every answer, in ms."),
        chunk_ms: float = typer.Option(0.0, help="Pause between streamed content chunks, in ms."),
        scenario: Path | None = typer.Option(
            None, exists=True, dir_okay=False, help="Scripted turns (JSON or TOML); see docs/mock-llm.md."
        ),
        record: Path | None = typer.Option(
            None, dir_okay=False, help="Also append every request received to this JSONL file."
        ),
        expect_key: str | None = typer.Option(
            None, help="Answer 401 to any credential but this one (default: any non-empty key)."
        ),
        text: str | None = typer.Option(None, help="The answer's text when no scenario says otherwise."),
        fail: list[str] = typer.Option(
            [],
            help='Arm a failure at start, as JSON (repeatable): \'{"status":529,"count":-1}\'.',
        ),
    ) -> None:
        # Imported here so `agenttrail --help` does not pay for the server stack.
        from agenttrail.cli.serve import port_taken
        from agenttrail.testing.mock_llm import Failure, MockConfig, load_scenario, serve_forever

        try:
            failures = [Failure.from_dict(_json_object(f)) for f in fail]
            config = MockConfig(
                ttft_ms=ttft_ms,
                chunk_ms=chunk_ms,
                latency_ms=latency_ms,
                scenario=load_scenario(scenario) if scenario else None,
                record_path=record,
                expected_key=expect_key,
                failures=failures,
            )
        except ValueError as e:
            raise typer.BadParameter(str(e)) from e
        if text is not None:
            config.text = text
        if taken := port_taken(host, port):
            raise typer.BadParameter(taken, param_hint="'--port'")
        typer.echo(
            f"mock-llm listening on http://{host}:{port}  "
            f"(Anthropic base URL http://{host}:{port}, OpenAI base URL http://{host}:{port}/v1)",
            err=True,
        )
        serve_forever(config, host, port)


def _json_object(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(f'--fail takes a JSON object such as \'{{"status": 529, "count": 1}}\', got {text!r}')
    return value

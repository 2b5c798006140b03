"""`agenttrail login --server URL --key VK` and `agenttrail logout`: the defaults for run, sessions and sync.

They go to `$AGENTTRAIL_HOME/config`, readable by the owner only: it holds the engineer's key. The
sandbox of `agenttrail run` hides that folder, so an agent cannot read the key.
"""

from __future__ import annotations

import typer

from agenttrail.cli.common import CONFIG_HELP, console, err_console, fail, friendly, settings_for


def register(app: typer.Typer) -> None:
    @app.command(rich_help_panel="Sessions")
    @friendly
    def login(
        server: str = typer.Option(..., "--server", help="The agenttrail server, e.g. https://agenttrail.example.com"),
        key: str = typer.Option(..., "--key", help="Your virtual key (sk-at-…), from `agenttrail key create`."),
        project: str | None = typer.Option(None, "--project", help="Default project for `agenttrail run`."),
        no_verify: bool = typer.Option(False, "--no-verify", help="Store without asking the server."),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Store the server and your key as the defaults for `agenttrail run`, `sessions` and `sync`."""
        from agenttrail.tracer.remote import (
            ClientConfig,
            NoSessionsApi,
            RemoteError,
            RemoteUnavailable,
            SessionsClient,
            normalise_server_url,
            save_client_config,
        )

        try:
            url = normalise_server_url(server)
        except RemoteError as e:
            fail(str(e))
            return
        if url.endswith("/v1"):
            # The OpenAI base URL (http://gateway:4100/v1), pasted: the server is its root.
            url = url[: -len("/v1")]
        if not key.startswith("sk-at-"):
            fail("that is not an agenttrail virtual key (they start with sk-at-); ask your admin for one")
        who = ""
        if not no_verify:
            with SessionsClient(url, key) as client:
                try:
                    info = client.list(limit=0).get("key") or {}
                    parts = [f"team {info.get('team')}"] if info.get("team") else []
                    parts += [f"project {info.get('project')}"] if info.get("project") else []
                    parts += [str(info.get("engineer"))] if info.get("engineer") else []
                    who = f" as {', '.join(parts)}" if parts else ""
                except NoSessionsApi as e:
                    # Stored anyway, `agenttrail run` failed against it later, far from the mistake.
                    fail(
                        f"{url} answered, but it is not an agenttrail server ({e}); check the URL (the server's "
                        "root, as `agenttrail serve` prints it), or store it anyway with --no-verify"
                    )
                except RemoteUnavailable as e:
                    err_console.print(
                        f"warning: {e}; storing the defaults without checking the key", highlight=False, markup=False
                    )
                except RemoteError as e:
                    if e.status in (401, 403):
                        message = str(e).split("; check it with", 1)[0]
                        fail(
                            f"{message}; check the key for a typo (`agenttrail key list` shows the prefixes), "
                            "or ask your admin for a new one"
                        )
                    fail(str(e))
        path = save_client_config(settings_for(None, config).home, ClientConfig(url, key, project))
        console.print(f"logged in to {url}{who} (key {key[:12]}…, saved in {path})", highlight=False, markup=False)

    @app.command(rich_help_panel="Sessions")
    @friendly
    def logout(config: str | None = typer.Option(None, "--config", help=CONFIG_HELP)) -> None:
        """Forget the stored server and key."""
        from agenttrail.tracer.remote import config_path, remove_client_config

        home = settings_for(None, config).home
        if remove_client_config(home):
            console.print(f"removed {config_path(home)}", highlight=False, markup=False)
        else:
            console.print("not logged in", highlight=False)

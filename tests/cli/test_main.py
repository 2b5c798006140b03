"""The CLI registers only the module a command needs, and the table behind that stays true."""

from __future__ import annotations

import subprocess
import sys

import typer
from typer.main import get_command

from agenttrail.cli.main import COMMAND_MODULES, COMMAND_OWNERS, build_app, modules_for


def _top_level_names(modules: tuple[str, ...]) -> set[str]:
    group = get_command(build_app(modules))
    assert isinstance(group, typer.core.TyperGroup)
    return set(group.commands)


def test_owner_table_matches_what_each_module_registers() -> None:
    for module in COMMAND_MODULES:
        owned = {word for word, owner in COMMAND_OWNERS.items() if owner == module}
        assert _top_level_names((module,)) == owned, module


def test_known_command_loads_only_its_module_and_anything_else_loads_all() -> None:
    assert modules_for(["run", "--", "claude"]) == ("run",)
    assert modules_for(["import", "codex"]) == ("import_",)
    assert modules_for([]) == COMMAND_MODULES
    assert modules_for(["--help"]) == COMMAND_MODULES
    assert modules_for(["no-such-command"]) == COMMAND_MODULES


def _modules_after(argv: list[str]) -> set[str]:
    probe = (
        "import sys\n"
        f"sys.argv = ['agenttrail', *{argv!r}]\n"
        "from agenttrail.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    return set(done.stderr.split())


def test_run_does_not_pay_for_the_database_and_pricing_imports() -> None:
    loaded = _modules_after(["run", "--help"])
    assert "typer" in loaded
    assert not loaded & {"sqlalchemy", "alembic", "genai_prices"}


def test_help_still_lists_every_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agenttrail", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0
    for word in COMMAND_OWNERS:
        assert word in done.stdout, word

from __future__ import annotations

import json
import os
import shlex
import tomllib
from pathlib import Path

import pytest

from agenttrail.tracer.agent_env import codex_config, gateway_env
from agenttrail.tracer.agents import (
    agent_session_id,
    config_paths,
    detect_agent,
    transcript_location,
)
from agenttrail.tracer.sandbox import scrub_env

EMPTY_PATH = {"PATH": "/nonexistent"}


@pytest.mark.parametrize(
    ("command", "name", "own_argv0"),
    [
        ("claude -p hi", "claude-code", "claude"),
        ("/usr/local/bin/codex exec --json x", "codex", "/usr/local/bin/codex"),
        ("npx -y @openai/codex@0.169.0 exec", "codex", "@openai/codex@0.169.0"),
        ("npx @anthropic-ai/claude-code -p x", "claude-code", "@anthropic-ai/claude-code"),
        ("npm exec -- @google/gemini-cli -p x", "gemini", "@google/gemini-cli"),
        (
            "node --no-warnings /opt/n/node_modules/@anthropic-ai/claude-code/cli.js -p x",
            "claude-code",
            "/opt/n/node_modules/@anthropic-ai/claude-code/cli.js",
        ),
        ("env FOO=1 BAR=2 claude", "claude-code", "claude"),
        ("env -u HOME FOO=1 timeout -s INT 60 aider --yes", "aider", "aider"),
        ("sudo -E nice -n 5 codex", "codex", "codex"),
        ("python3 -m aider --model x", "aider", "aider"),
        ("uvx aider-chat", "aider", "aider-chat"),
        ("pipx run aider-chat --yes", "aider", "aider-chat"),
        ("bash -c 'IS_SANDBOX=1 exec env X=1 gemini -p \"hi there\"'", "gemini", "gemini"),
        ("bash -c 'cd app && claude -p x'", "claude-code", "claude"),  # was "cd"
        ("sh -c 'env | grep x'", "sh", "sh"),  # a script of commands names no agent: the shell ran it
        ("bash -c 'echo two >> a.txt; git commit -qam second'", "bash", "bash"),  # was "echo"
        ("sh -c './my-agent.sh --x'", "my-agent.sh", "./my-agent.sh"),
        ("cursor-agent -p x", "cursor-agent", "cursor-agent"),
        ("opencode run x", "opencode", "opencode"),
        ("pnpm dlx opencode-ai run", "opencode", "opencode-ai"),
        ("./scripts/my-agent.sh --flag", "my-agent.sh", "./scripts/my-agent.sh"),
        ("python3 agent.py", "agent.py", "agent.py"),
    ],
)
def test_recognition(command: str, name: str, own_argv0: str) -> None:
    info = detect_agent(shlex.split(command), env=EMPTY_PATH, cwd="/nonexistent")
    assert (info.name, info.argv[0]) == (name, own_argv0)
    assert info.known == (name in {"claude-code", "codex", "gemini", "aider", "cursor-agent", "opencode"})


def _npm_install(root: Path, package: str, version: str, script: str, bin_name: str) -> Path:
    pkg_dir = root / "lib" / "node_modules" / package
    (pkg_dir / Path(script).parent).mkdir(parents=True, exist_ok=True)
    (pkg_dir / "package.json").write_text(json.dumps({"name": package, "version": version}))
    marker = root / f"{bin_name}-was-run"
    (pkg_dir / script).write_text(f"#!/bin/sh\ntouch {marker}\necho 9.9.9\n")
    (pkg_dir / script).chmod(0o755)
    (root / "bin").mkdir(exist_ok=True)
    (root / "bin" / bin_name).symlink_to(pkg_dir / script)
    return marker


def test_version_from_package_json_without_running_the_agent(tmp_path: Path) -> None:
    marker = _npm_install(tmp_path, "@anthropic-ai/claude-code", "2.1.330", "cli.js", "claude")
    env = {"PATH": str(tmp_path / "bin")}
    info = detect_agent(["claude", "-p", "x"], env=env)
    assert (info.name, info.version) == ("claude-code", "2.1.330")
    assert info.executable == str((tmp_path / "lib/node_modules/@anthropic-ai/claude-code/cli.js").resolve())
    assert not marker.exists()  # nothing was executed to learn the version


def test_an_oddly_named_link_is_recognised_by_what_it_points_to(tmp_path: Path) -> None:
    _npm_install(tmp_path, "@openai/codex", "0.169.0", "bin/codex.js", "ai")
    info = detect_agent(["ai", "exec"], env={"PATH": str(tmp_path / "bin")})
    assert (info.name, info.version, info.known) == ("codex", "0.169.0", True)


def test_version_of_a_python_agent_from_its_dist_info(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / "python3.11" / "site-packages" / "aider_chat-0.86.1.dist-info").mkdir(parents=True)
    (venv / "bin" / "aider").write_text("#!/bin/sh\n")
    (venv / "bin" / "aider").chmod(0o755)
    info = detect_agent([str(venv / "bin" / "aider")])
    assert (info.name, info.version) == ("aider", "0.86.1")


def test_running_for_a_version_is_opt_in(tmp_path: Path) -> None:
    marker = _npm_install(tmp_path, "unrelated-pkg", "1.0.0", "cli.js", "gemini")
    env = {"PATH": str(tmp_path / "bin")}
    assert detect_agent(["gemini"], env=env).version is None  # package.json is not gemini's
    assert not marker.exists()
    assert detect_agent(["gemini"], env=env, run_version=True).version == "9.9.9"
    assert marker.exists()


def test_transcripts_config_and_session_ids() -> None:
    env: dict[str, str] = {}
    assert transcript_location("claude-code", env=env, home="/h", cwd="/work/my_proj.x") == Path(
        "/h/.claude/projects/-work-my-proj-x"
    )
    assert transcript_location("claude-code", env={"CLAUDE_CONFIG_DIR": "/c"}, home="/h", cwd="/p") == Path(
        "/c/projects/-p"
    )
    assert transcript_location("codex", env={"CODEX_HOME": "/x"}, home="/h", cwd="/p") == Path("/x/sessions")
    assert transcript_location("aider", env=env, home="/h", cwd="/p") == Path("/p/.aider.chat.history.md")
    assert transcript_location("my-agent", env=env, home="/h", cwd="/p") is None
    assert config_paths("claude-code", env=env, home="/h") == (("/h/.claude",), ("/h/.claude.json",))
    assert config_paths("codex", env={"CODEX_HOME": "/s/codex-home"}, home="/h") == (("/s/codex-home",), ())
    assert agent_session_id("claude-code", {"CLAUDE_CODE_SESSION_ID": "abc"}) == "abc"
    assert agent_session_id("codex", {"CODEX_THREAD_ID": "t1"}) == "t1"
    assert agent_session_id("my-agent", {"CODEX_THREAD_ID": "t1"}) is None


# ---- pointing agents at the gateway ----------------------------------------------------------

USER_CODEX = """model = "o3"
model_provider = "openai"
approval_policy = "never"

[model_providers.openai-proxy]
base_url = "https://proxy.example/v1"

[profiles.fast]
model = "o4-mini"
model_provider = "openai-proxy"
"""


def test_codex_config_keeps_user_settings_and_uses_the_gateway() -> None:
    cfg = tomllib.loads(codex_config(USER_CODEX, "http://gw:4100/v1"))
    assert cfg["model_provider"] == "agenttrail"
    assert cfg["model"] == "o3" and cfg["approval_policy"] == "never"
    assert cfg["profiles"]["fast"]["model_provider"] == "openai-proxy"  # tables are left as they are
    assert cfg["model_providers"]["agenttrail"] == {
        "name": "agenttrail gateway",
        "base_url": "http://gw:4100/v1",
        "env_key": "CODEX_API_KEY",
        "wire_api": "responses",
    }
    clash = tomllib.loads(codex_config('[model_providers.agenttrail]\nbase_url = "x"\n', "http://gw/v1"))
    assert clash["model_provider"] == "agenttrail_session"
    broken = tomllib.loads(codex_config("this is = = not toml", "http://gw/v1"))
    assert broken["model_provider"] == "agenttrail"


def test_gateway_env_and_private_codex_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(USER_CODEX)
    (home / ".codex" / "auth.json").write_text('{"OPENAI_API_KEY": "sk-real-user-key"}')
    (home / ".codex" / "AGENTS.md").write_text("be terse\n")
    before = {p.name: p.read_bytes() for p in (home / ".codex").iterdir()}
    user_env = {
        "PATH": "/usr/bin",
        "ANTHROPIC_API_KEY": "sk-ant-real",
        "ANTHROPIC_AUTH_TOKEN": "real-bearer",
        "OPENAI_API_KEY": "sk-real",
        "AGENTTRAIL_KEY": "sk-at-engineer",
        "OTEL_RESOURCE_ATTRIBUTES": "team=core",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "https://elsewhere",
    }
    gw = gateway_env(
        server_url="http://127.0.0.1:4100/",
        key="sk-at-session-1",
        session_id="s-1",
        private_dir=tmp_path / "session",
        env=user_env,
        home=str(home),
    )
    final = gw.apply(scrub_env(user_env))
    assert final["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:4100"
    assert final["OPENAI_BASE_URL"] == "http://127.0.0.1:4100/v1"
    assert final["ANTHROPIC_API_KEY"] == final["OPENAI_API_KEY"] == final["CODEX_API_KEY"] == "sk-at-session-1"
    assert final["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4100/otlp"
    assert final["OTEL_EXPORTER_OTLP_HEADERS"] == "x-api-key=sk-at-session-1"
    assert final["OTEL_RESOURCE_ATTRIBUTES"] == "team=core,agenttrail.session_id=s-1"
    assert final["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1"
    assert "ANTHROPIC_AUTH_TOKEN" not in final and "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" not in final
    for secret in ("sk-ant-real", "real-bearer", "sk-real", "sk-at-engineer", "sk-real-user-key"):
        assert all(secret not in v for v in final.values())
    codex_home = Path(final["CODEX_HOME"])
    assert codex_home.parent == tmp_path / "session"
    assert sorted(p.name for p in codex_home.iterdir()) == ["AGENTS.md", "config.toml"]  # never auth.json
    cfg = tomllib.loads((codex_home / "config.toml").read_text())
    assert cfg["model_providers"]["agenttrail"]["base_url"] == "http://127.0.0.1:4100/v1"
    assert {p.name: p.read_bytes() for p in (home / ".codex").iterdir()} == before  # the user's home is untouched
    assert set(gw.files) == {str(codex_home / "config.toml"), str(codex_home / "AGENTS.md")}
    assert os.stat(codex_home).st_mode & 0o077 == 0

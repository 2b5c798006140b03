from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agenttrail.tracer.sandbox import (
    NO_SANDBOX_HINT,
    SandboxConfig,
    build_argv,
    cache_env,
    ensure_agent_dirs,
    probe,
    removed_env_names,
    scrub_env,
)


def test_scrub_env_removes_credentials_unless_allowed() -> None:
    env = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_PROFILE": "p",
        "GITHUB_TOKEN": "g",
        "GH_TOKEN": "h",
        "OPENAI_API_KEY": "o",
        "NPM_TOKEN": "n",
        "CLIENT_SECRET_FILE": "c",
        "DB_SECRET": "d",
        "AGENTTRAIL_KEY": "sk-at-engineer",
        "TOKENIZERS_PARALLELISM": "false",  # not *_TOKEN
        "SECRETARY": "s",  # not *_SECRET*
    }
    assert scrub_env(env) == {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "TOKENIZERS_PARALLELISM": "false",
        "SECRETARY": "s",
    }
    kept = scrub_env(env, allow=["NPM_TOKEN", "AWS_PROFILE"])
    assert kept["NPM_TOKEN"] == "n" and kept["AWS_PROFILE"] == "p"
    assert "GITHUB_TOKEN" not in kept
    assert removed_env_names(env, allow=["NPM_TOKEN"])[:3] == ["AGENTTRAIL_KEY", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"]
    assert env["GITHUB_TOKEN"] == "g"  # the input is not modified


def test_argv_order_is_the_policy(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".netrc").write_text("machine x password y\n")
    proj = home / "proj"
    proj.mkdir()
    argv = build_argv(
        SandboxConfig(str(proj), home=str(home), allow_write=(str(tmp_path / "out"),), agent_dirs=(".claude",)),
        ["claude", "-p", "hi"],
    )
    assert argv[:3] == ["bwrap", "--die-with-parent", "--unshare-pid"]
    assert argv[-4:] == ["--", "claude", "-p", "hi"]
    joined = " ".join(argv)
    assert "--ro-bind / /" in joined
    assert "--share-net" not in joined and "--unshare-net" not in joined  # the network stays
    tmpfs_tmp = joined.index("--tmpfs /tmp")
    bind_proj = joined.index(f"--bind {proj} {proj}")
    hide_ssh = joined.index(f"--tmpfs {home}/.ssh")
    hide_netrc = joined.index(f"--dev-bind /dev/null {home}/.netrc")
    agent = joined.index(f"--bind-try {home}/.claude {home}/.claude")
    assert tmpfs_tmp < bind_proj < hide_ssh < agent
    assert bind_proj < hide_netrc < agent
    assert f"--bind {tmp_path}/out {tmp_path}/out" in joined
    assert f"{home}/.aws" not in joined  # hidden paths that do not exist need no mount
    assert argv[argv.index("--chdir") + 1] == str(proj)


def test_ensure_agent_dirs_creates_missing_directories(tmp_path: Path) -> None:
    ensure_agent_dirs(SandboxConfig(str(tmp_path), home=str(tmp_path), agent_dirs=(".codex",)))
    assert (tmp_path / ".codex").is_dir()


def test_cache_env_points_into_tmp() -> None:
    assert all(v.startswith("/tmp/") for v in cache_env().values())


def test_probe_explains_a_missing_bwrap() -> None:
    result = probe("agenttrail-no-such-bwrap")
    assert result.ok is False
    assert result.reason is not None and "not installed" in result.reason and NO_SANDBOX_HINT in result.reason


def test_probe_explains_a_failing_bwrap(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    result = probe(str(fake))
    assert result.ok is False
    assert result.reason is not None
    assert "Operation not permitted" in result.reason and "--no-sandbox" in result.reason


# ---- the real bubblewrap ---------------------------------------------------------------------


@pytest.fixture
def fake_home() -> Iterator[Path]:
    # Outside /tmp on purpose: the sandbox's private /tmp would hide a home under /tmp anyway, and
    # the test must show that the hiding rules, not the private /tmp, keep the secrets away.
    base = Path(tempfile.mkdtemp(prefix="agenttrail-home-", dir="/var/tmp"))
    try:
        (base / ".ssh").mkdir()
        (base / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        (base / ".netrc").write_text("machine github.com password hunter2\n")
        (base / "notes.txt").write_text("visible\n")
        (base / "proj").mkdir()
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run(argv: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env={"PATH": os.environ["PATH"], "HOME": str(home)}
    )


def test_secrets_are_hidden_but_the_rest_of_home_is_readable(bwrap: str, fake_home: Path) -> None:
    cfg = SandboxConfig(str(fake_home / "proj"), home=str(fake_home))
    assert _run(["cat", str(fake_home / ".ssh" / "id_rsa")], fake_home).returncode == 0  # control: readable outside
    inside = _run(build_argv(cfg, ["cat", str(fake_home / ".ssh" / "id_rsa")], bwrap=bwrap), fake_home)
    assert inside.returncode != 0
    assert "PRIVATE KEY" not in inside.stdout
    netrc = _run(build_argv(cfg, ["cat", str(fake_home / ".netrc")], bwrap=bwrap), fake_home)
    assert (netrc.returncode, netrc.stdout) == (0, "")
    _run(build_argv(cfg, ["sh", "-c", f"echo stolen > {fake_home}/.netrc"], bwrap=bwrap), fake_home)
    assert (fake_home / ".netrc").read_text() == "machine github.com password hunter2\n"
    notes = _run(build_argv(cfg, ["cat", str(fake_home / "notes.txt")], bwrap=bwrap), fake_home)
    assert (notes.returncode, notes.stdout) == (0, "visible\n")


def test_writes_inside_the_project_only(bwrap: str, fake_home: Path) -> None:
    cfg = SandboxConfig(str(fake_home / "proj"), home=str(fake_home), agent_dirs=(".agentcfg",))
    ensure_agent_dirs(cfg)
    script = (
        "echo ok > inside.txt && echo cfg > $HOME/.agentcfg/state"
        " && { echo bad > $HOME/outside.txt 2>/dev/null; echo outside=$?; }"
        " && { touch /etc/agenttrail-test 2>/dev/null; echo etc=$?; }"
    )
    done = _run(build_argv(cfg, ["sh", "-c", script], bwrap=bwrap), fake_home)
    assert done.returncode == 0, done.stderr
    assert "outside=0" not in done.stdout and "etc=0" not in done.stdout
    assert (fake_home / "proj" / "inside.txt").read_text() == "ok\n"
    assert (fake_home / ".agentcfg" / "state").read_text() == "cfg\n"
    assert not (fake_home / "outside.txt").exists()
    assert not Path("/etc/agenttrail-test").exists()


def test_tmp_is_private_and_allow_write_works(bwrap: str, fake_home: Path, tmp_path: Path) -> None:
    marker = tmp_path / f"host-{uuid.uuid4().hex}"
    marker.write_text("host\n")
    extra = fake_home / "extra"
    extra.mkdir()
    cfg = SandboxConfig(str(fake_home / "proj"), home=str(fake_home), allow_write=(str(extra),))
    name = f"agenttrail-sandbox-{uuid.uuid4().hex}"
    script = f"test ! -e {marker} && echo private > /tmp/{name} && cat /tmp/{name} && echo x > {extra}/f"
    done = _run(build_argv(cfg, ["sh", "-c", script], bwrap=bwrap), fake_home)
    assert (done.returncode, done.stdout) == (0, "private\n"), done.stderr
    assert not Path("/tmp", name).exists()
    assert (extra / "f").read_text() == "x\n"


def test_other_processes_are_invisible(bwrap: str, fake_home: Path) -> None:
    cfg = SandboxConfig(str(fake_home / "proj"), home=str(fake_home))
    done = _run(
        build_argv(cfg, ["sh", "-c", f"test -e /proc/{os.getpid()}/environ && echo seen || echo hidden"], bwrap=bwrap),
        fake_home,
    )
    assert done.stdout.strip() == "hidden"


def test_a_command_installed_under_tmp_stays_runnable(bwrap: str, tmp_path: Path) -> None:
    """A CI checkout or venv under /tmp must not vanish behind the private /tmp."""
    tool_dir = Path(tempfile.mkdtemp(prefix="at-tool-", dir="/tmp"))
    try:
        tool = tool_dir / "bin" / "hello"
        tool.parent.mkdir()
        tool.write_text("#!/bin/sh\necho hello from $0\n")
        tool.chmod(0o755)
        project = tmp_path / "proj"
        project.mkdir()
        cfg = SandboxConfig(project_dir=str(project), home=str(tmp_path))
        argv = build_argv(cfg, [str(tool)], bwrap=bwrap)
        i = argv.index(str(tool_dir))
        assert argv[i - 1 : i + 2] == ["--ro-bind", str(tool_dir), str(tool_dir)]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and "hello from" in p.stdout, p.stderr
        # Read-only: the agent cannot change the tool it was started with.
        write = [*argv[: argv.index("--") + 1], "sh", "-c", f"echo x > {tool_dir}/x"]
        assert subprocess.run(write, capture_output=True, text=True, timeout=30).returncode != 0
        assert not (tool_dir / "x").exists()
    finally:
        shutil.rmtree(tool_dir)

# ruff: noqa: E501  (one table row per command reads best on one line)
from __future__ import annotations

import shlex
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agenttrail.events import Event
from agenttrail.tracer import packages
from agenttrail.tracer.packages import package_events, recognise_installs

# (command line, [(ecosystem, name, version_spec, manager, source)]); an empty list means "not an install"
CASES: list[tuple[str, list[tuple[str, str, str | None, str, str]]]] = [
    # npm
    ("npm install lodash", [("npm", "lodash", None, "npm", "registry")]),
    (
        "npm i -D typescript@5.4.2 @types/node@^20",
        [("npm", "typescript", "5.4.2", "npm", "registry"), ("npm", "@types/node", "^20", "npm", "registry")],
    ),
    ("npm add @scope/pkg", [("npm", "@scope/pkg", None, "npm", "registry")]),
    ("npm --prefix sub install left-pad@latest", [("npm", "left-pad", "latest", "npm", "registry")]),
    ("npm install --registry https://r.example install-me", [("npm", "install-me", None, "npm", "registry")]),
    (
        "npm install ./local-pkg ../x.tgz",
        [("npm", "./local-pkg", None, "npm", "path"), ("npm", "../x.tgz", None, "npm", "path")],
    ),
    (
        "npm install git+https://github.com/o/r.git user/repo",
        [("npm", "git+https://github.com/o/r.git", None, "npm", "vcs"), ("npm", "user/repo", None, "npm", "vcs")],
    ),
    (
        "/usr/local/bin/npm install -g @anthropic-ai/claude-code@2.1.0",
        [("npm", "@anthropic-ai/claude-code", "2.1.0", "npm", "registry")],
    ),
    ("npm install", []),
    ("npm ci", []),
    ("npm run build", []),
    # pnpm, yarn, bun
    ("pnpm add -D vitest", [("npm", "vitest", None, "pnpm", "registry")]),
    ("pnpm --filter web add react@18", [("npm", "react", "18", "pnpm", "registry")]),
    ("pnpm install", []),
    ("yarn add axios@^1.6.0", [("npm", "axios", "^1.6.0", "yarn", "registry")]),
    ("yarn global add serve", [("npm", "serve", None, "yarn", "registry")]),
    ("yarn workspace api add zod", [("npm", "zod", None, "yarn", "registry")]),
    ("yarn", []),
    ("bun add hono", [("npm", "hono", None, "bun", "registry")]),
    # pip and friends
    ("pip install requests", [("pypi", "requests", None, "pip", "registry")]),
    (
        "pip3 install 'Flask_SQLAlchemy>=3,<4' 'uvicorn[standard]==0.30'",
        [("pypi", "flask-sqlalchemy", ">=3,<4", "pip", "registry"), ("pypi", "uvicorn", "==0.30", "pip", "registry")],
    ),
    ("pip install -r requirements.txt -c constraints.txt", [("pypi", "requirements.txt", None, "pip", "requirements")]),
    (
        "pip install -e . ./vendor/pkg",
        [("pypi", ".", None, "pip", "path"), ("pypi", "./vendor/pkg", None, "pip", "path")],
    ),
    (
        "pip install git+https://github.com/o/r@v1#egg=r",
        [("pypi", "git+https://github.com/o/r@v1#egg=r", None, "pip", "vcs")],
    ),
    ("pip install 'pkg @ https://example.com/pkg-1.0.tar.gz'", [("pypi", "pkg", None, "pip", "url")]),
    ("pip install --index-url https://idx.example -U httpx", [("pypi", "httpx", None, "pip", "registry")]),
    (
        "pip3.11 install dist/thing-1.0-py3-none-any.whl",
        [("pypi", "dist/thing-1.0-py3-none-any.whl", None, "pip", "path")],
    ),
    ("python -m pip install rich", [("pypi", "rich", None, "pip", "registry")]),
    ("python3.12 -I -m pip install 'numpy~=1.26'", [("pypi", "numpy", "~=1.26", "pip", "registry")]),
    ("python script.py install x", []),
    ("python -m venv .venv", []),
    ("pip list", []),
    ("uv pip install ruff==0.5.0", [("pypi", "ruff", "==0.5.0", "uv", "registry")]),
    (
        "uv add --dev pytest 'httpx>=0.27'",
        [("pypi", "pytest", None, "uv", "registry"), ("pypi", "httpx", ">=0.27", "uv", "registry")],
    ),
    ("uv tool install black", [("pypi", "black", None, "uv", "registry")]),
    ("uv run pytest", []),
    ("poetry add requests@^2.31 --group dev", [("pypi", "requests", "^2.31", "poetry", "registry")]),
    ("poetry add 'django>=5'", [("pypi", "django", ">=5", "poetry", "registry")]),
    ("pipx install httpie", [("pypi", "httpie", None, "pipx", "registry")]),
    # apt
    (
        "apt-get install -y --no-install-recommends curl jq=1.6-2",
        [("apt", "curl", None, "apt-get", "registry"), ("apt", "jq", "1.6-2", "apt-get", "registry")],
    ),
    ("apt install -t bookworm-backports git", [("apt", "git", None, "apt", "registry")]),
    ("apt install ./pkg.deb", [("apt", "./pkg.deb", None, "apt", "path")]),
    ("apt-get update", []),
    # cargo
    (
        "cargo add serde@1.0 tokio --features full",
        [("cargo", "serde", "1.0", "cargo", "registry"), ("cargo", "tokio", None, "cargo", "registry")],
    ),
    ("cargo install ripgrep --version 14.1.0 --locked", [("cargo", "ripgrep", "14.1.0", "cargo", "registry")]),
    ("cargo +nightly install cargo-expand", [("cargo", "cargo-expand", None, "cargo", "registry")]),
    ("cargo install --git https://github.com/o/tool", [("cargo", "https://github.com/o/tool", None, "cargo", "vcs")]),
    ("cargo build --release", []),
    # go
    (
        "go get github.com/gin-gonic/gin@v1.9.1 golang.org/x/sync",
        [
            ("go", "github.com/gin-gonic/gin", "v1.9.1", "go", "registry"),
            ("go", "golang.org/x/sync", None, "go", "registry"),
        ],
    ),
    (
        "go install -ldflags '-s -w' golang.org/x/tools/gopls@latest",
        [("go", "golang.org/x/tools/gopls", "latest", "go", "registry")],
    ),
    ("go get example.com/old@none", []),
    ("go install ./cmd/...", [("go", "./cmd/...", None, "go", "path")]),
    ("go build ./...", []),
    # gem
    ("gem install rails -v 7.1.3", [("rubygems", "rails", "7.1.3", "gem", "registry")]),
    ("gem install bundler:2.5.0 --no-document", [("rubygems", "bundler", "2.5.0", "gem", "registry")]),
    ("bundle add sidekiq --version '~> 7'", [("rubygems", "sidekiq", "~> 7", "bundler", "registry")]),
    # not package managers, and wrappers that appear as their own exec under the tracer
    ("sudo apt-get install curl", []),
    ("node /usr/lib/node_modules/npm/bin/npm-cli.js install x", []),
    ("bash -c 'npm install x'", []),
]


@pytest.mark.parametrize(("command", "expected"), CASES, ids=[c for c, _ in CASES])
def test_recognised(command: str, expected: list[tuple[str, str, str | None, str, str]]) -> None:
    argv = shlex.split(command)
    got = recognise_installs(argv)
    assert [(r["ecosystem"], r["name"], r["version_spec"], r["manager"], r["source"]) for r in got] == expected
    assert all(r["argv"] == argv for r in got)


def test_dev_flag_and_resolved_paths() -> None:
    [dev] = recognise_installs(["npm", "install", "--save-dev", "eslint"])
    assert dev["dev"] is True
    [prod] = recognise_installs(["npm", "install", "eslint"])
    assert "dev" not in prod
    [req, local] = recognise_installs(["pip", "install", "-r", "reqs/dev.txt", "../lib"], cwd="/work/app")
    assert req["resolved_path"] == "/work/app/reqs/dev.txt"
    assert local["resolved_path"] == "/work/lib"


def test_build_isolation_subprocess_is_not_an_install_by_the_agent() -> None:
    argv = [
        "/usr/bin/python3",
        "-m",
        "pip",
        "install",
        "--ignore-installed",
        "--prefix",
        "/tmp/pip-build-env-x/overlay",
        "setuptools>=40",
    ]
    assert recognise_installs(argv) == []


def test_package_events_from_an_exec_event() -> None:
    exec_event = Event(
        session_id="s1",
        kind="exec",
        ts=datetime(2026, 5, 1, tzinfo=UTC),
        payload={"argv": ["npm", "i", "a", "b@2"], "cwd": "/p", "pid": 7},
        event_id="e1",
    )
    events = package_events(exec_event)
    assert [(e.kind, e.payload["name"], e.payload["version_spec"], e.payload["pid"]) for e in events] == [
        ("package_install", "a", None, 7),
        ("package_install", "b", "2", 7),
    ]
    assert [e.event_id for e in events] == [e.event_id for e in package_events(exec_event)]
    assert len({e.event_id for e in events}) == 2
    assert package_events(Event(session_id="s1", kind="file_read", ts=exec_event.ts)) == []


_WORDS = st.sampled_from(
    ["npm", "pip", "python", "-m", "install", "add", "i", "-r", "-e", "--", "=", "@", "@x@", ":", "-v", "go", "get",
     "cargo", "apt-get", "gem", "uv", "poetry", "yarn", "global", "workspace", "tool", "@none", " @ ", "--git", "--path"]
)  # fmt: skip


@given(st.lists(st.one_of(st.text(max_size=20), _WORDS), max_size=8))
def test_never_raises_and_always_well_formed(argv: list[str]) -> None:
    # The inner function, so that the public one's safety net cannot hide an exception.
    for rec in packages._recognise(argv, "/w"):
        assert set(rec) >= {"ecosystem", "name", "version_spec", "manager", "argv"}
        assert isinstance(rec["name"], str)
        assert rec["version_spec"] is None or isinstance(rec["version_spec"], str)
        assert rec["argv"] == argv

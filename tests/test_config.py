"""Settings precedence and clear errors for a bad config file."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from agenttrail.config import ConfigError, load_settings


def test_defaults(tmp_path: Path) -> None:
    s = load_settings(env={"AGENTTRAIL_HOME": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'agenttrail.db'}"
    assert s.anthropic.base_url == "https://api.anthropic.com"
    assert s.openai.base_url == "https://api.openai.com/v1"


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    cfg = tmp_path / "agenttrail.toml"
    cfg.write_text(
        'database_url = "sqlite:///from-file.db"\n[upstreams.openai]\nbase_url = "http://file/v1"\n'
        'api_key = "k-file"\n[prices."gpt-4o"]\ninput = 1.5\n'
    )
    env = {"AGENTTRAIL_HOME": str(tmp_path), "AGENTTRAIL_DATABASE_URL": "sqlite:///from-env.db"}
    s = load_settings(env=env)
    assert s.database_url == "sqlite:///from-env.db" and s.openai.base_url == "http://file/v1"
    assert s.openai.api_key == "k-file"
    assert s.price_overrides[0].per_mtok == {"input": Decimal("1.5")}
    assert load_settings(env=env, db="sqlite:///flag.db").database_url == "sqlite:///flag.db"
    env["OPENAI_API_KEY"] = "k-env"
    assert load_settings(env=env).openai.api_key == "k-env"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("this is = = not toml", "not valid TOML"),
        ('[prices."gpt-4o"]\ninptu = 1\n', "unknown token class 'inptu'"),
        ('[prices."gpt-4o"]\ninput = "cheap"\n', "must be a number"),
        ('[upstreams.anthropic]\nbase_url = "api.anthropic.com"\n', "must start with http"),
        ('[prices."gpt-4o"]\ninput = "nan"\n', "must be a number"),
        ('[prices."gpt-4o"]\ninput = "inf"\n', "must be a number"),
        ('[gateway]\nmax_body_mb = "big"\n', "max_body_mb in .* must be a positive number, got 'big'"),
        ("[gateway]\nmax_body_mb = -1\n", "max_body_mb in .* must be a positive number, got -1"),
        ('[gateway]\nread_timeout_s = "soon"\n', "read_timeout_s in .* must be a positive number"),
        ("[gateway]\nconnect_timeout_s = 0\n", "connect_timeout_s in .* must be a positive number"),
        ('[budgets]\ntimezone = "Mars/Base"\n', "unknown time zone 'Mars/Base'"),
    ],
)
def test_bad_config_says_what_is_wrong(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "agenttrail.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        load_settings(env={"AGENTTRAIL_HOME": str(tmp_path)})


def test_missing_named_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml", env={})


def test_a_config_file_that_is_not_text_or_not_a_file(tmp_path: Path) -> None:
    cfg = tmp_path / "agenttrail.toml"
    cfg.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config_file=cfg, env={})
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(config_file=tmp_path, env={})


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("AGENTTRAIL_MAX_BODY_BYTES", "lots"),
        ("AGENTTRAIL_UPSTREAM_CONNECT_TIMEOUT_S", "x"),
        ("AGENTTRAIL_UPSTREAM_READ_TIMEOUT_S", "-5"),
        ("AGENTTRAIL_BUDGET_TIMEZONE", "Mars/Base"),
    ],
)
def test_bad_environment_says_which_variable(tmp_path: Path, var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var if var != "AGENTTRAIL_BUDGET_TIMEZONE" else "Mars/Base"):
        load_settings(env={"AGENTTRAIL_HOME": str(tmp_path), var: value})
    good = load_settings(env={"AGENTTRAIL_HOME": str(tmp_path), "AGENTTRAIL_UPSTREAM_READ_TIMEOUT_S": "2.5"})
    assert good.upstream_read_timeout_s == 2.5


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        # Each of these started the server as if the file said nothing: no upstream, no limit, no cache.
        ('[upstream.anthropic]\nbase_url = "http://h"\n', "unknown table [upstream]; did you mean [upstreams]"),
        ("[limit.key]\nrpm = 5\n", "unknown table [limit]; did you mean [limits]"),
        ("[budget]\ntimezone = 'UTC'\n", "did you mean [budgets]"),
        ('databse_url = "sqlite:///x.db"\n', "unknown setting databse_url; did you mean database_url"),
        ("[cache]\nenable = true\n", "[cache] has no setting enable; did you mean enabled"),
        ('[upstreams.anthropic]\nbaseurl = "http://x"\n', "[upstreams.anthropic] has no setting baseurl"),
        ("[upstreams.antropic]\nx = 1\n", "[upstreams] has no setting antropic; did you mean anthropic"),
        ("[gateway]\nmax_body = 5\n", "[gateway] has no setting max_body; did you mean max_body_mb"),
        ("[budgets]\nleasepct = 2\n", "[budgets] has no setting leasepct; did you mean lease_pct"),
        ("[routing]\nalias = {}\n", "[routing] has no setting alias; did you mean aliases"),
        ("[routing.downgrade]\nat = 80\n", "[routing.downgrade] has no setting at"),
        ("[alerts]\nwebhook = []\n", "[alerts] has no setting webhook; did you mean webhooks"),
    ],
)
def test_a_misspelt_table_or_setting_is_named_not_ignored(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "agenttrail.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_settings(env={"AGENTTRAIL_HOME": str(tmp_path)})


def test_every_documented_table_is_known(tmp_path: Path) -> None:
    cfg = tmp_path / "agenttrail.toml"
    cfg.write_text(
        'home = "/tmp/x"\ndatabase_url = "sqlite:///x.db"\n'
        '[upstreams.anthropic]\nbase_url = "http://a"\napi_key = "k"\n[upstreams.openai]\nbase_url = "http://o/v1"\n'
        "[gateway]\nmax_body_mb = 1\nconnect_timeout_s = 1\nread_timeout_s = 1\n"
        '[budgets]\ntimezone = "UTC"\nlease_pct = 1\n[alerts]\nwebhooks = []\nmax_attempts = 2\n'
        "[limits.key]\nrpm = 1\n[routing]\nmax_attempts = 2\n[routing.downgrade]\nat_pct = 80\n"
        "[cache]\nenabled = true\nttl_s = 5\n[retention]\ncontent_days = 9\n[sessions]\nkey_max_hours = 2\n"
        '[github]\nwebhook_secret = "s"\n[prices."m"]\ninput = 1\n'
    )
    assert load_settings(env={"AGENTTRAIL_HOME": str(tmp_path)}).max_body_bytes == 1024 * 1024


@pytest.mark.parametrize("value", ['"false"', '"no"', "0", '"yes"'])
def test_cache_enabled_takes_true_or_false_only(tmp_path: Path, value: str) -> None:
    # bool("false") is True: `enabled = "false"` switched the response cache on.
    from agenttrail.governance.cache import CacheSettings

    cfg = tmp_path / "agenttrail.toml"
    cfg.write_text(f"[cache]\nenabled = {value}\n")
    with pytest.raises(ConfigError, match=r"\[cache\] enabled must be true or false"):
        CacheSettings.from_settings(load_settings(env={"AGENTTRAIL_HOME": str(tmp_path)}))

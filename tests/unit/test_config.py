"""Unit tests of queuectl.config (settings layering and validation) and queuectl.policy (the
queue-policy keys)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from queuectl import config, errors, models
from queuectl import policy as dbpolicy


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"XDG_DATA_HOME": str(tmp_path / "data"), **values}


# --- default_db_url -------------------------------------------------------------------------


def test_default_db_url_is_a_sqlite_file_under_xdg_data_home(tmp_path):
    url = config.default_db_url({"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert url == f"sqlite:///{tmp_path}/xdg/queuectl/queuectl.db"


def test_default_db_url_falls_back_to_home_local_share(tmp_path):
    url = config.default_db_url({"HOME": str(tmp_path / "home")})
    assert url == f"sqlite:///{tmp_path}/home/.local/share/queuectl/queuectl.db"


def test_default_db_url_ignores_an_empty_xdg_data_home(tmp_path):
    url = config.default_db_url({"XDG_DATA_HOME": "", "HOME": str(tmp_path)})
    assert url == f"sqlite:///{tmp_path}/.local/share/queuectl/queuectl.db"


# --- load_settings: layering ----------------------------------------------------------------


def test_defaults_apply_when_nothing_is_configured(tmp_path):
    settings = config.load_settings({}, environ=_env(tmp_path))
    assert settings == config.Settings(
        database_url=f"sqlite:///{tmp_path}/data/queuectl/queuectl.db",
        lease_ttl_s=10.0,
        heartbeat_s=2.0,
        recovery_every_s=2.0,
        poll_interval_s=1.0,
        kill_grace_s=5.0,
        log_format="auto",
        log_level="info",
    )


def test_toml_file_overrides_defaults(tmp_path):
    path = _write(
        tmp_path / "conf.toml",
        'database-url = "sqlite:///from-file.db"\n'
        'lease-ttl = "30s"\n'
        "heartbeat = 3\n"
        "recovery-every = 2.5\n"
        'poll-interval = "500ms"\n'
        'kill-grace = "1m"\n'
        'log-format = "json"\n'
        'log-level = "debug"\n',
    )
    settings = config.load_settings({}, environ=_env(tmp_path), path=path)
    assert settings == config.Settings(
        database_url="sqlite:///from-file.db",
        lease_ttl_s=30.0,
        heartbeat_s=3.0,
        recovery_every_s=2.5,
        poll_interval_s=0.5,
        kill_grace_s=60.0,
        log_format="json",
        log_level="debug",
    )


def test_environment_overrides_the_toml_file(tmp_path):
    path = _write(tmp_path / "conf.toml", 'lease-ttl = "30s"\ndatabase-url = "sqlite:///f.db"\n')
    environ = _env(tmp_path, QUEUECTL_LEASE_TTL="45s", QUEUECTL_DATABASE_URL="sqlite:///e.db")
    settings = config.load_settings({}, environ=environ, path=path)
    assert settings.lease_ttl_s == 45.0
    assert settings.database_url == "sqlite:///e.db"


def test_flags_override_the_environment(tmp_path):
    environ = _env(tmp_path, QUEUECTL_LEASE_TTL="45s", QUEUECTL_LOG_FORMAT="console")
    settings = config.load_settings({"lease_ttl_s": "1m", "log_format": "json"}, environ=environ)
    assert settings.lease_ttl_s == 60.0
    assert settings.log_format == "json"


def test_a_none_flag_means_not_given(tmp_path):
    environ = _env(tmp_path, QUEUECTL_LEASE_TTL="45s", QUEUECTL_DATABASE_URL="sqlite:///e.db")
    settings = config.load_settings({"lease_ttl_s": None, "database_url": None}, environ=environ)
    assert settings.lease_ttl_s == 45.0
    assert settings.database_url == "sqlite:///e.db"


def test_each_layer_wins_only_over_the_layers_below_it(tmp_path):
    path = _write(
        tmp_path / "conf.toml",
        'heartbeat = "3s"\nrecovery-every = "3s"\npoll-interval = "3s"\n',
    )
    environ = _env(tmp_path, QUEUECTL_RECOVERY_EVERY="4s", QUEUECTL_POLL_INTERVAL="4s")
    settings = config.load_settings({"poll_interval_s": "5s"}, environ=environ, path=path)
    assert settings.kill_grace_s == 5.0  # default
    assert settings.heartbeat_s == 3.0  # file
    assert settings.recovery_every_s == 4.0  # environment
    assert settings.poll_interval_s == 5.0  # flag


def test_every_setting_has_an_environment_variable(tmp_path):
    environ = _env(
        tmp_path,
        QUEUECTL_DATABASE_URL="postgresql://db/queue",
        QUEUECTL_LEASE_TTL="20",
        QUEUECTL_HEARTBEAT="4",
        QUEUECTL_RECOVERY_EVERY="6",
        QUEUECTL_POLL_INTERVAL="250ms",
        QUEUECTL_KILL_GRACE="2s",
        QUEUECTL_LOG_FORMAT="console",
        QUEUECTL_LOG_LEVEL="warning",
    )
    assert config.load_settings({}, environ=environ) == config.Settings(
        database_url="postgresql://db/queue",
        lease_ttl_s=20.0,
        heartbeat_s=4.0,
        recovery_every_s=6.0,
        poll_interval_s=0.25,
        kill_grace_s=2.0,
        log_format="console",
        log_level="warning",
    )


def test_flags_accept_numbers_as_seconds(tmp_path):
    settings = config.load_settings({"kill_grace_s": 1.5}, environ=_env(tmp_path))
    assert settings.kill_grace_s == 1.5


def test_queuectl_toml_in_the_working_directory_is_read_implicitly(tmp_path):
    # the autouse fixture runs every test inside tmp_path
    assert Path.cwd() == tmp_path
    _write(tmp_path / "queuectl.toml", 'lease-ttl = "12s"\n')
    assert config.load_settings({}, environ=_env(tmp_path)).lease_ttl_s == 12.0


def test_a_missing_implicit_queuectl_toml_is_fine(tmp_path):
    assert not (tmp_path / "queuectl.toml").exists()
    assert config.load_settings({}, environ=_env(tmp_path)).lease_ttl_s == 10.0


def test_queuectl_config_names_the_file(tmp_path):
    path = _write(tmp_path / "elsewhere.toml", 'kill-grace = "7s"\n')
    settings = config.load_settings({}, environ=_env(tmp_path, QUEUECTL_CONFIG=str(path)))
    assert settings.kill_grace_s == 7.0


def test_an_explicit_path_wins_over_queuectl_config(tmp_path):
    env_file = _write(tmp_path / "env.toml", 'kill-grace = "7s"\n')
    arg_file = _write(tmp_path / "arg.toml", 'kill-grace = "8s"\n')
    environ = _env(tmp_path, QUEUECTL_CONFIG=str(env_file))
    assert config.load_settings({}, environ=environ, path=arg_file).kill_grace_s == 8.0


# --- load_settings: errors ------------------------------------------------------------------


def test_a_missing_explicit_config_file_is_a_config_error(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(errors.ConfigError, match="does not exist"):
        config.load_settings({}, environ=_env(tmp_path), path=missing)


def test_a_missing_file_named_by_queuectl_config_is_a_config_error(tmp_path):
    environ = _env(tmp_path, QUEUECTL_CONFIG=str(tmp_path / "nope.toml"))
    with pytest.raises(errors.ConfigError, match=r"nope\.toml"):
        config.load_settings({}, environ=environ)


def test_invalid_toml_is_a_config_error_naming_the_file(tmp_path):
    path = _write(tmp_path / "broken.toml", "lease-ttl = \n")
    with pytest.raises(errors.ConfigError, match=r"broken\.toml"):
        config.load_settings({}, environ=_env(tmp_path), path=path)


def test_an_unknown_toml_key_is_a_config_error_naming_the_key(tmp_path):
    path = _write(tmp_path / "conf.toml", 'lease_ttl = "5s"\n')  # underscore: not a key
    with pytest.raises(errors.ConfigError, match="unknown key 'lease_ttl'"):
        config.load_settings({}, environ=_env(tmp_path), path=path)


def _heartbeat_from(source: str, value: str, tmp_path: Path) -> config.Settings:
    """load_settings with `heartbeat` set to value in one layer: env, file or flag."""
    environ = _env(tmp_path)
    flags: dict[str, object] = {}
    path = None
    if source == "env":
        environ["QUEUECTL_HEARTBEAT"] = value
    elif source == "file":
        path = _write(tmp_path / "conf.toml", f'heartbeat = "{value}"\n')
    else:
        flags["heartbeat_s"] = value
    return config.load_settings(flags, environ=environ, path=path)


SOURCES = [("env", "QUEUECTL_HEARTBEAT"), ("file", "conf.toml"), ("flag", "flag")]


@pytest.mark.parametrize(("source", "where"), SOURCES)
@pytest.mark.parametrize("value", ["0", "0s", "0ms"])
def test_a_zero_duration_is_a_config_error_naming_key_and_source(tmp_path, source, where, value):
    with pytest.raises(errors.ConfigError, match="heartbeat") as info:
        _heartbeat_from(source, value, tmp_path)
    assert where in str(info.value)
    assert "must be > 0" in str(info.value)


@pytest.mark.parametrize(("source", "where"), SOURCES)
def test_a_non_duration_setting_is_a_config_error_naming_key_and_source(tmp_path, source, where):
    # errors.ConfigError is the branch for a bad setting (errors.py), not a plain UsageError
    with pytest.raises(errors.ConfigError) as info:
        _heartbeat_from(source, "soon", tmp_path)
    assert "heartbeat" in str(info.value)
    assert where in str(info.value)


def test_an_unknown_log_format_is_a_config_error(tmp_path):
    with pytest.raises(errors.ConfigError, match="log-format"):
        config.load_settings({}, environ=_env(tmp_path, QUEUECTL_LOG_FORMAT="xml"))


def test_config_error_is_a_usage_error_with_exit_code_2():
    assert issubclass(errors.ConfigError, errors.UsageError)
    assert errors.ConfigError.exit_code == 2


# --- queue policy ---------------------------------------------------------------------------

GOOD_VALUES: list[tuple[str, str, object]] = [
    ("max-retries", "0", 0),
    ("max-retries", "5", 5),
    ("max-retries", " 7 ", 7),
    ("backoff-base", "1", 1.0),
    ("backoff-base", "2.5", 2.5),
    ("backoff-max", "30", 30.0),
    ("backoff-max", "5m", 300.0),
    ("backoff-max", "1h", 3600.0),
    ("backoff-max", "250ms", 0.25),
    ("backoff-jitter", "0", 0.0),
    ("backoff-jitter", "0.5", 0.5),
    ("backoff-jitter", "1", 1.0),
    ("job-timeout", "none", None),
    ("job-timeout", "NONE", None),
    ("job-timeout", "null", None),
    ("job-timeout", "0", None),
    ("job-timeout", "45", 45.0),
    ("job-timeout", "10m", 600.0),
    ("output-limit", "1024", 1024),
    ("output-limit", "65536", 65536),
    ("retention-completed", "7d", 604800.0),
    ("retention-completed", "none", None),
    ("retention-dead", "30d", 2592000.0),
    ("retention-dead", "0", None),
    ("allowed-commands", "none", None),
    ("allowed-commands", "", None),
    ("allowed-commands", '["echo *", "re:make [a-z]+"]', ("echo *", "re:make [a-z]+")),
]

BAD_VALUES: list[tuple[str, str]] = [
    ("max-retries", "-1"),
    ("max-retries", "1.5"),
    ("max-retries", "three"),
    ("max-retries", ""),
    ("backoff-base", "0.5"),
    ("backoff-base", "-2"),
    ("backoff-base", "two"),
    ("backoff-base", "nan"),
    ("backoff-base", "inf"),
    ("backoff-max", "0"),
    ("backoff-max", "-5"),
    ("backoff-max", "soon"),
    ("backoff-max", "none"),
    ("backoff-jitter", "-0.1"),
    ("backoff-jitter", "1.5"),
    ("backoff-jitter", "nan"),
    ("job-timeout", "-5"),
    ("job-timeout", "5x"),
    ("job-timeout", "forever"),
    ("output-limit", "1023"),
    ("output-limit", "-1"),
    ("output-limit", "2048.5"),
    ("output-limit", "64k"),
    ("retention-completed", "-1d"),
    ("retention-completed", "forever"),
    ("retention-dead", "99999d"),
    ("allowed-commands", "echo *"),
    ("allowed-commands", "[]"),
    ("allowed-commands", '["echo *", 3]'),
    ("allowed-commands", '[""]'),
    ("allowed-commands", '["re:("]'),
]


def test_good_and_bad_values_cover_every_policy_key():
    assert {key for key, _, _ in GOOD_VALUES} == set(dbpolicy.POLICY_KEYS)
    assert {key for key, _ in BAD_VALUES} == set(dbpolicy.POLICY_KEYS)


def test_every_policy_key_names_a_policy_field():
    names = {f.name for f in dataclasses.fields(models.Policy)}
    assert {spec.attr for spec in dbpolicy.POLICY_KEYS.values()} == names
    assert all(spec.key == key and spec.help for key, spec in dbpolicy.POLICY_KEYS.items())


@pytest.mark.parametrize(("key", "text", "expected"), GOOD_VALUES)
def test_parse_policy_value_accepts_good_values(key, text, expected):
    value = dbpolicy.parse_policy_value(key, text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(("key", "text"), BAD_VALUES)
def test_parse_policy_value_rejects_bad_values_naming_the_key(key, text):
    with pytest.raises(errors.UsageError, match=f"^bad value for {key}: "):
        dbpolicy.parse_policy_value(key, text)


def test_parse_policy_value_rejects_an_unknown_key_listing_the_known_ones():
    with pytest.raises(errors.UsageError, match="unknown config key 'retries'") as info:
        dbpolicy.parse_policy_value("retries", "3")
    assert "max-retries" in str(info.value)


def test_policy_key_returns_the_spec():
    assert dbpolicy.policy_key("max-retries").attr == "max_retries"


def test_policy_from_no_rows_is_the_default_policy():
    assert dbpolicy.policy_from_rows({}) == models.Policy()


def test_policy_from_rows_parses_stored_text():
    policy = dbpolicy.policy_from_rows(
        {
            "max-retries": "5",
            "backoff-base": "3",
            "backoff-max": "600",
            "backoff-jitter": "0.1",
            "job-timeout": "90",
            "output-limit": "4096",
        }
    )
    assert policy == models.Policy(
        max_retries=5,
        backoff_base=3.0,
        backoff_max_s=600.0,
        backoff_jitter=0.1,
        job_timeout_s=90.0,
        output_limit=4096,
    )


def test_policy_from_rows_ignores_unknown_keys_and_unparsable_values():
    policy = dbpolicy.policy_from_rows(
        {"colour": "blue", "max-retries": "lots", "backoff-base": "0.1", "output-limit": "2048"}
    )
    assert policy == models.Policy(output_limit=2048)


def test_policy_from_rows_reads_none_as_no_job_timeout():
    assert dbpolicy.policy_from_rows({"job-timeout": "none"}).job_timeout_s is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "none"), (3600.0, "3600"), (2.0, "2"), (0.5, "0.5"), (3, "3"), (0.25, "0.25")],
)
def test_policy_text(value, text):
    assert dbpolicy.policy_text(value) == text


@pytest.mark.parametrize(("key", "text", "expected"), GOOD_VALUES)
def test_stored_policy_text_reads_back_as_the_same_value(key, text, expected):
    stored = dbpolicy.policy_text(dbpolicy.parse_policy_value(key, text))
    policy = dbpolicy.policy_from_rows({key: stored})
    assert getattr(policy, dbpolicy.POLICY_KEYS[key].attr) == expected


@pytest.mark.parametrize(
    ("key", "text"), [("backoff-max", "0.0015"), ("job-timeout", "0.001"), ("backoff-max", "1.5")]
)
def test_a_tiny_accepted_duration_survives_being_stored(key, text):
    # `config set` stores policy_text(parse_policy_value(...)); every worker reads it back
    # with policy_from_rows, which silently drops text that no longer parses
    value = dbpolicy.parse_policy_value(key, text)
    stored = dbpolicy.policy_text(value)
    policy = dbpolicy.policy_from_rows({key: stored})
    assert getattr(policy, dbpolicy.POLICY_KEYS[key].attr) == value


@pytest.mark.parametrize("key", ["backoff-max", "job-timeout"])
def test_a_duration_under_a_millisecond_is_rejected(key):
    with pytest.raises(errors.UsageError, match="at least 1ms"):
        dbpolicy.parse_policy_value(key, "0.00001")


def test_a_heartbeat_longer_than_a_third_of_the_lease_is_refused():
    with pytest.raises(errors.ConfigError, match="a third of lease-ttl"):
        config.load_settings({}, environ={"QUEUECTL_LEASE_TTL": "3s", "QUEUECTL_HEARTBEAT": "2"})
    ok = config.load_settings({}, environ={"QUEUECTL_LEASE_TTL": "6", "QUEUECTL_HEARTBEAT": "2"})
    assert (ok.lease_ttl_s, ok.heartbeat_s) == (6.0, 2.0)


@pytest.mark.parametrize(
    ("key", "text"),
    [("backoff-max", "400d"), ("job-timeout", "9999999999"), ("backoff-base", "1e15")],
)
def test_absurdly_large_policy_values_are_refused(key, text):
    with pytest.raises(errors.UsageError, match=f"bad value for {key}"):
        dbpolicy.parse_policy_value(key, text)


def test_hostname_setting_comes_from_the_environment():
    assert config.load_settings({}, environ={"QUEUECTL_HOSTNAME": "node-7"}).hostname == "node-7"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5, "5"),
        (0.5, "0.5"),
        (None, "none"),
        (timedelta(minutes=2), "120.0s"),
        (["echo *"], '["echo *"]'),
        (("echo *",), '["echo *"]'),
    ],
)
def test_value_text_turns_a_python_value_into_config_set_text(value, text):
    assert dbpolicy.value_text(value) == text


def test_entries_show_stored_values_over_the_defaults():
    entries = {e.key: e for e in dbpolicy.entries({"max-retries": "5", "colour": "blue"})}
    assert list(entries) == list(dbpolicy.POLICY_KEYS)  # unknown stored keys left out
    assert (entries["max-retries"].value, entries["max-retries"].source) == ("5", "database")
    assert (entries["job-timeout"].value, entries["job-timeout"].source) == ("none", "default")
    assert all(e.help == dbpolicy.POLICY_KEYS[e.key].help for e in entries.values())


def test_config_still_serves_policy_from_rows_for_older_callers():
    assert config.policy_from_rows({"max-retries": "4"}).max_retries == 4
    with pytest.raises(AttributeError):
        _ = config.no_such_name  # type: ignore[attr-defined]

"""Settings precedence (flag > environment > default) and CLI flag wiring."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_monitor.cli import build_parser, settings_from_args
from monitor.settings import DEFAULT_DATABASE_URL, Settings


def settings_for(argv: list[str]) -> Settings:
    return settings_from_args(build_parser().parse_args(argv))


def test_defaults(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    s = settings_for(["run"])
    assert s.database_url == DEFAULT_DATABASE_URL == "sqlite:///./data/monitor.db"
    assert s.config_path == Path("config/endpoints.yaml")
    assert (s.host, s.port, s.interval_override_s) == ("127.0.0.1", 8000, None)
    assert settings_for(["scheduler"]).port == 9000


def test_database_url_from_the_environment_and_the_flag_wins(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
    assert settings_for(["run"]).database_url == "postgresql://postgres@127.0.0.1/test"
    assert settings_for(["run", "--db", "sqlite:////tmp/x.db"]).database_url == "sqlite:////tmp/x.db"
    assert settings_for(["db", "upgrade", "--db", "sqlite:////tmp/y.db"]).database_url == "sqlite:////tmp/y.db"


def test_service_flags(monkeypatch):
    s = settings_for(["run", "--config", "c.yaml", "--host", "0.0.0.0", "--port", "9999", "--interval", "2"])
    assert (s.config_path, s.host, s.port, s.interval_override_s) == (Path("c.yaml"), "0.0.0.0", 9999, 2.0)


def test_cors_origins_are_comma_separated_in_the_environment(monkeypatch):
    monkeypatch.setenv("LLM_MONITOR_CORS_ORIGINS", "https://a.example, https://b.example")
    assert settings_for(["api"]).cors_origins == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize("argv", [
    ["run", "--interval", "0"], ["run", "--interval", "x"], ["run", "--port", "70000"],
    # The override has the config's bounds: no probe flood, no overflow in the live figures.
    ["run", "--interval", "0.001"], ["run", "--interval", "1e308"], ["run", "--interval", "inf"],
    ["run", "--interval", "nan"], ["scheduler", "--interval", "604801"],
])
def test_bad_flags_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_port_from_the_environment_beats_the_command_default_and_the_flag_beats_both(monkeypatch):
    monkeypatch.setenv("LLM_MONITOR_PORT", "7000")
    assert settings_for(["scheduler"]).port == 7000
    assert settings_for(["run"]).port == 7000
    assert settings_for(["scheduler", "--port", "7100"]).port == 7100
    monkeypatch.delenv("LLM_MONITOR_PORT")
    assert settings_for(["scheduler"]).port == 9000

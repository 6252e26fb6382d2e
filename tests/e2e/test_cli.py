"""The command line as users call it: check-config, probe argument errors, db upgrade."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.e2e.conftest import REPO
from monitor.testing.stream_server import StreamServer, json_response, openai_stream, sse_stream_response


def llm_monitor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args], capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def test_check_config_accepts_the_bundled_file_and_warns_about_missing_credentials():
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDFLARE_")}
    proc = subprocess.run([sys.executable, "-m", "monitor", "check-config", "config/endpoints.yaml"],
                          capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "OK (1 models, 1 endpoints)" in proc.stdout
    assert "CLOUDFLARE_ACCOUNT_ID" in proc.stderr or "CLOUDFLARE_API_TOKEN" in proc.stderr


def test_check_config_names_the_offending_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models:\n  - id: a\n    name: A\n    endpoints:\n"
        "      - {provider: P, protocol: openai, base_url: 'http://x/v1', model: m}\n"
        "      - {provider: Q, protocol: opnai, base_url: 'http://x/v1', model: m}\n"
    )
    proc = llm_monitor("check-config", str(bad))
    assert proc.returncode != 0
    assert "models[0].endpoints[1].protocol: unknown protocol 'opnai'" in proc.stderr


def test_check_config_on_a_missing_file_fails_clearly(tmp_path):
    proc = llm_monitor("check-config", str(tmp_path / "nope.yaml"))
    assert proc.returncode != 0 and "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_probe_rejects_bad_arguments_with_a_non_zero_exit():
    for args in (
        ["--protocol", "opnai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--json"],
        ["--protocol", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--max-tokens", "0", "--json"],
        ["--protocol", "openai", "--model", "m", "--json"],
    ):
        proc = llm_monitor("probe", *args)
        assert proc.returncode != 0, args
        assert proc.stdout == ""


def test_probe_prints_one_json_object_with_the_contract_fields():
    with StreamServer() as server:
        server.route("GET", "/v1/models", json_response(200, {"data": []}))
        server.route("POST", "/v1/chat/completions",
                     lambda _r: sse_stream_response(openai_stream(ttft_s=0.05, gap_s=0.01, n_tokens=11)))
        proc = llm_monitor("probe", "--protocol", "openai", "--base-url", server.url + "/v1",
                           "--model", "m", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert list(result)[:11] == ["ok", "error_kind", "error", "http_status", "started_at", "ttft_s",
                                 "connect_s", "total_s", "output_tokens", "token_count_source",
                                 "tokens_per_second"]
    assert result["ok"] is True and result["output_tokens"] == 11
    assert abs(result["ttft_s"] - 0.05) < 0.01


def test_db_upgrade_creates_the_schema(tmp_path):
    db = tmp_path / "sub" / "m.db"
    proc = llm_monitor("db", "upgrade", "--db", f"sqlite:///{db}")
    assert proc.returncode == 0, proc.stderr
    assert db.exists()
    assert llm_monitor("db", "upgrade", "--db", f"sqlite:///{db}").returncode == 0  # idempotent


def test_an_interval_override_beyond_the_config_bounds_is_one_line_naming_the_setting(tmp_path):
    # 1e308 s would overflow the live figures' date arithmetic; 1 ms would flood a provider.
    for value in ("1e308", "0.001", "inf"):
        proc = llm_monitor("run", "--db", f"sqlite:///{tmp_path}/m.db", "--port", "0",
                           env={"LLM_MONITOR_INTERVAL_OVERRIDE_S": value})
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("invalid setting LLM_MONITOR_INTERVAL_OVERRIDE_S:"), proc.stderr
        proc = llm_monitor("run", "--db", f"sqlite:///{tmp_path}/m.db", "--port", "0", "--interval", value)
        assert proc.returncode == 2 and "--interval" in proc.stderr, proc.stderr
    assert not (tmp_path / "m.db").exists()

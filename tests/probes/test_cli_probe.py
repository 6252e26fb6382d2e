"""`llm-monitor probe`: argument validation, one JSON object on stdout, exit codes, no key leaks."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.probes import cli
from monitor.probes.base import CONTRACT_FIELDS
from monitor.testing.stream_server import json_response, openai_stream, sse_stream_response, unused_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-cli-secret-777"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="probe")
    cli.add_arguments(p)
    return p


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "monitor", "probe", *argv], capture_output=True,
                          text=True, env=environ, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("argv", [
    ["--protocol", "opnai", "--base-url", "http://x/v1", "--model", "m"],
    ["--protocol", "openai", "--base-url", "x/v1", "--model", "m"],
    ["--protocol", "openai", "--base-url", "ftp://x/v1", "--model", "m"],
    ["--protocol", "openai", "--base-url", "http://x:99999/v1", "--model", "m"],
    ["--protocol", "openai", "--base-url", "http://x/v1", "--model", "m", "--max-tokens", "0"],
    ["--protocol", "openai", "--base-url", "http://x/v1", "--model", "m", "--max-tokens", "-5"],
    ["--protocol", "openai", "--base-url", "http://x/v1", "--model", "m", "--timeout", "0"],
    ["--protocol", "openai", "--base-url", "http://x/v1", "--model", "m", "--timeout", "soon"],
    ["--protocol", "openai", "--base-url", "http://x/v1", "--model", "m", "--api-key-env", "NOT A NAME"],
    ["--protocol", "openai", "--base-url", "http://x/v1"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(argv)
    assert exit_info.value.code == 2


def test_arguments_become_a_target():
    args = parser().parse_args(["--protocol", "anthropic", "--base-url", "https://api.anthropic.com",
                                "--model", "claude", "--api-key-env", "MY_KEY", "--max-tokens", "64",
                                "--timeout", "20s", "--option", "max_tokens_field=max_completion_tokens",
                                "--json"])
    target = cli.target_from_args(args, {"MY_KEY": KEY})
    assert (target.protocol, target.model, target.max_tokens, target.timeout_s) == ("anthropic", "claude", 64, 20.0)
    assert target.api_key.reveal() == KEY and target.api_key_env == "MY_KEY"
    assert target.options == {"max_tokens_field": "max_completion_tokens"}
    assert cli.target_from_args(args, {}).api_key is None


def test_key_from_a_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    args = parser().parse_args(["--protocol", "openai", "--base-url", "http://x/v1", "--model", "m",
                                "--api-key-env", "MY_KEY"])
    assert cli.target_from_args(args, {"MY_KEY_FILE": str(key_file)}).api_key.reveal() == KEY


def test_successful_probe_prints_one_json_object(server):
    server.route("POST", "/v1/chat/completions",
                 sse_stream_response(openai_stream(ttft_s=0.05, gap_s=0.01, n_tokens=8)))
    proc = run_cli("--protocol", "openai", "--base-url", f"{server.url}/v1", "--model", "tiny",
                   "--api-key-env", "CLI_KEY", "--max-tokens", "40", "--timeout", "10", "--json",
                   env={"CLI_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert tuple(data)[: len(CONTRACT_FIELDS)] == CONTRACT_FIELDS
    assert data["ok"] is True and data["error_kind"] is None
    assert data["output_tokens"] == 8 and data["token_count_source"] == "usage"
    assert abs(data["ttft_s"] - server.requests_to("/v1/chat/completions")[0].ttft_truth_s()) < 0.02
    request = server.requests_to("/v1/chat/completions")[0]
    assert request.json["max_tokens"] == 40 and request.json["model"] == "tiny"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in proc.stdout + proc.stderr


def test_failed_probe_still_exits_0(server):
    server.route("POST", "/v1/chat/completions", json_response(401, {"error": {"message": f"bad key {KEY}"}}))
    proc = run_cli("--protocol", "openai", "--base-url", f"{server.url}/v1", "--model", "m",
                   "--api-key-env", "CLI_KEY", "--json", env={"CLI_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["error_kind"] == "auth_error" and data["http_status"] == 401
    assert KEY not in proc.stdout + proc.stderr


def test_missing_key_is_config_error_with_exit_0(server):
    env = {k: v for k, v in os.environ.items() if k != "UNSET_PROBE_KEY"}
    proc = subprocess.run([sys.executable, "-m", "monitor", "probe", "--protocol", "openai", "--base-url",
                           f"{server.url}/v1", "--model", "m", "--api-key-env", "UNSET_PROBE_KEY", "--json"],
                          capture_output=True, text=True, env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["error_kind"] == "config_error" and "UNSET_PROBE_KEY" in data["error"]
    assert server.requests == []


def test_unreachable_endpoint_and_bad_protocol_via_the_real_entrypoint():
    proc = run_cli("--protocol", "openai", "--base-url", f"http://127.0.0.1:{unused_port()}/v1",
                   "--model", "m", "--timeout", "5", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["error_kind"] == "connect_error"
    bad = run_cli("--protocol", "opnai", "--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--json")
    assert bad.returncode == 2 and bad.stdout == "" and "opnai" in bad.stderr


def test_human_output_without_json(server):
    server.route("POST", "/v1/chat/completions",
                 sse_stream_response(openai_stream(ttft_s=0.02, gap_s=0.01, n_tokens=4)))
    proc = run_cli("--protocol", "openai", "--base-url", f"{server.url}/v1", "--model", "m")
    assert proc.returncode == 0 and proc.stdout.startswith("ok  ttft ")


@pytest.mark.parametrize(("option", "message"), [
    ("max_tokenz=64", "--option max_tokenz: unknown option (expected one of extra_body, include_usage, max_tokens_field)"),
    ("max_tokens_field=max_tokenz", "--option max_tokens_field: Input should be 'max_tokens' or 'max_completion_tokens'"),
    ("include_usage=\"yes\"", "--option include_usage: expected true or false"),
    ("api_key=sk-in-argv", "--option api_key: keys may not be written in the config file"),
])
def test_options_the_protocol_does_not_know_exit_2_before_any_request(server, option, message):
    proc = run_cli("--protocol", "openai", "--base-url", f"{server.url}/v1", "--model", "m",
                   "--option", option, "--json")
    assert proc.returncode == 2 and proc.stdout == ""
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert "sk-in-argv" not in proc.stderr
    assert server.requests == []


def test_a_two_line_key_file_is_config_error_and_never_reaches_the_socket(server, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(f"{KEY}\nsecond-line-of-the-secret\n")
    server.route("POST", "/v1/chat/completions",
                 sse_stream_response(openai_stream(ttft_s=0.01, gap_s=0.01, n_tokens=2)))
    proc = run_cli("--protocol", "openai", "--base-url", f"{server.url}/v1", "--model", "m",
                   "--api-key-env", "CLI_KEY", "--json", env={"CLI_KEY_FILE": str(key_file)})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["error_kind"] == "config_error"
    assert data["error"].startswith("the key in the key file named by CLI_KEY_FILE has more than one line")
    assert KEY not in proc.stdout + proc.stderr and "second-line" not in proc.stdout + proc.stderr
    assert server.requests == []

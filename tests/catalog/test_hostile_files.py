"""Config files built to hurt, through the real entrypoint (`python -m monitor check-config`):
each is refused with one line naming the problem, within seconds and a bounded amount of
memory, instead of freezing or crashing the process.

The child runs under an address-space limit (RLIMIT_AS), so unbounded growth fails the test
quickly instead of swapping the machine; the subprocess timeout catches a hang.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 1024 * 1024 * 1024  # address space for the child: the monitor needs a fraction
SECONDS = 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def monitor(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=SECONDS, preexec_fn=_limit_memory)


def check_config(path: Path) -> subprocess.CompletedProcess:
    return monitor("check-config", str(path))


def assert_refused_with(proc: subprocess.CompletedProcess, path: Path, message: str) -> None:
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    # check-config prints a header line, then one line per problem: here exactly one.
    assert proc.stderr.splitlines() == [f"{path}: invalid config:", f"{path}: {message}"]


ENDPOINT = "{provider: A, protocol: openai, base_url: 'http://127.0.0.1:9/v1', model: m}"


def alias_bomb() -> str:
    """Ten levels of nine aliases each: about 440 bytes that name 9**10 (3.4 billion) strings."""
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 9) + "]")
    lines.append(f"models: [{{id: m, endpoints: [{ENDPOINT}]}}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_the_first_alias(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    assert bomb.stat().st_size < 600
    assert_refused_with(check_config(bomb), bomb, "YAML aliases are not allowed (line 2)")


def test_deep_nesting_is_refused_without_a_recursion_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("models: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert_refused_with(check_config(deep), deep, "nesting deeper than 32 levels is not allowed (line 1)")


def test_a_config_linked_to_dev_zero_is_refused_unread(tmp_path: Path) -> None:
    link = tmp_path / "endpoints.yaml"
    link.symlink_to("/dev/zero")
    assert_refused_with(check_config(link), link, "cannot read: not a regular file")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "endpoints.yaml"
    os.mkfifo(fifo)  # nobody ever writes: a blocking open would hang until the timeout
    assert_refused_with(check_config(fifo), fifo, "cannot read: not a regular file")


def test_a_huge_config_is_refused_without_being_parsed(tmp_path: Path) -> None:
    huge = tmp_path / "endpoints.yaml"
    block = f"  - {{id: m, endpoints: [{ENDPOINT}]}}\n".encode()
    with huge.open("wb") as out:
        out.write(b"models:\n")
        out.write(block * (50 * 1024 * 1024 // len(block)))
    assert_refused_with(check_config(huge), huge, "cannot read: larger than the limit of 2,097,152 bytes")


@pytest.mark.parametrize(("value", "message"), [
    ("1e308", "must be at most 168h (7 days)"),
    ("169h", "must be at most 168h (7 days)"),
    ("nan", "duration must be a finite number"),
    (".nan", "duration must be a finite number"),
    ("inf", "duration must be a finite number"),
    ("-.inf", "duration must be a finite number"),
    ("1ms", "must be at least 1s"),
    ("0.5", "must be at least 1s"),
])
def test_an_interval_out_of_bounds_is_one_line_not_a_crash(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(f"defaults: {{interval: {value}}}\nmodels: [{{id: m, endpoints: [{ENDPOINT}]}}]\n")
    proc = check_config(path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[1:] == [f"defaults.interval: {message} (line 1)"]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("timeout", "0.5", "must be at least 1s"),
    ("timeout", "601", "must be at most 10m"),
    ("timeout", "1e308", "must be at most 10m"),
    ("timeout", ".inf", "duration must be a finite number"),
    ("max_tokens", "0", "must be at least 1"),
    ("max_tokens", "65537", "must be at most 65536"),
])
def test_timeout_and_max_tokens_out_of_bounds_are_one_line(tmp_path: Path, field: str, value: str, message: str) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(f"defaults: {{{field}: {value}}}\nmodels: [{{id: m, endpoints: [{ENDPOINT}]}}]\n")
    proc = check_config(path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[1:] == [f"defaults.{field}: {message} (line 1)"]


def test_the_bounds_themselves_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text("defaults: {interval: 1s, timeout: 10m, max_tokens: 65536}\nmodels:\n"
                    f"  - {{id: a, endpoints: [{ENDPOINT}]}}\n"
                    "  - id: b\n    endpoints:\n"
                    "      - {provider: A, protocol: openai, base_url: 'http://127.0.0.1:9/v1', model: m,"
                    " interval: 168h, timeout: 1s, max_tokens: 1}\n")
    proc = check_config(path)
    assert proc.returncode == 0, proc.stderr
    assert "OK (2 models, 2 endpoints)" in proc.stdout


def test_run_refuses_an_interval_it_could_not_schedule(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(f"defaults: {{interval: 1e308}}\nmodels: [{{id: m, endpoints: [{ENDPOINT}]}}]\n")
    proc = monitor("run", "--config", str(path), "--db", f"sqlite:///{tmp_path / 'm.db'}", "--port", "0")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == "defaults.interval: must be at most 168h (7 days) (line 1)"

"""Child processes of the benchmarks: servers under test, started and stopped by their own pid.

`Child` starts a process in its own session (from the repository root by default) and stops it
with SIGTERM, then SIGKILL; `wait_http_ok` waits for a server to answer; `cpu_seconds_of` reads
a process's CPU time from /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent


class Child:
    """A child process we started (own session); stopped by its pid only, SIGTERM then SIGKILL."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None, log_path: Path | None = None,
                 stdout: Any = None, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd or ROOT, env={**os.environ, **(env or {})},
            stdout=stdout if stdout is not None else self._log, stderr=self._log,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_http_ok(url: str, *, timeout_s: float, child: Child | None = None) -> float:
    """Poll `url` until it answers 200; returns seconds waited. Raises with the child's log tail."""
    import httpx

    started = time.perf_counter()
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"{child.argv[:4]} exited with {child.proc.returncode}:\n{child.log_tail()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s" + (f":\n{child.log_tail()}" if child else ""))


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_settled(pid: int, *, below: float = 0.15, window_s: float = 5.0, timeout_s: float = 600.0) -> float:
    """Wait until the process uses less than `below` of a core over `window_s` (its start-up work,
    such as confirming endpoints that were failing when it stopped, is over); returns seconds
    waited. Raises after `timeout_s`."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        before = cpu_seconds_of(pid)
        time.sleep(window_s)
        if (cpu_seconds_of(pid) - before) / window_s < below:
            return time.perf_counter() - started
    raise TimeoutError(f"process {pid} still busy after {timeout_s:.0f} s")

"""The dependency rule (`[tool.importlinter]` in pyproject.toml) holds, and breaking it fails.

`lint-imports` runs as a subprocess over this checkout; the second test runs it over a copy of
the packages with one forbidden import added, so a contract that stopped biting shows up here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("llm_monitor", "api", "monitor")
LAYERS = "llm_monitor (composition root) > api > monitor"
PROBES = "probes measure one request"
STATS = "stats is pure"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    command = [str(lint)] if lint.exists() else [sys.executable, "-m", "importlinter.cli"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [*command, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )


def contract_lines(output: str) -> dict[str, str]:
    """Contract name prefix -> KEPT / BROKEN, from lint-imports' summary (names may wrap)."""
    flat = " ".join(output.split())
    verdicts: dict[str, str] = {}
    for name in (LAYERS, PROBES, STATS):
        match = re.search(re.escape(name) + r".*?\b(KEPT|BROKEN)\b", flat)
        assert match, f"contract {name!r} missing from the lint-imports output:\n{output}"
        verdicts[name] = match.group(1)
    return verdicts


def test_the_dependency_rule_holds():
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert contract_lines(proc.stdout) == {LAYERS: "KEPT", PROBES: "KEPT", STATS: "KEPT"}


@pytest.mark.parametrize(
    "module, line, broken",
    [
        ("monitor/live.py", "import api.app", LAYERS),
        ("api/schemas.py", "import llm_monitor.service", LAYERS),
        ("monitor/probes/wire.py", "import monitor.store", PROBES),
        ("monitor/probes/framing.py", "import monitor.metrics", PROBES),
        ("monitor/stats.py", "import socket", STATS),
        ("monitor/stats.py", "import sqlalchemy", STATS),
        ("monitor/cost.py", "import monitor.catalog", STATS),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, broken: str):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # added by the test\n")

    proc = lint_imports(tmp_path)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    verdicts = contract_lines(proc.stdout)
    assert verdicts[broken] == "BROKEN", proc.stdout
    assert [name for name, verdict in verdicts.items() if verdict == "BROKEN"] == [broken], proc.stdout
    assert module.removesuffix(".py").replace("/", ".") in proc.stdout

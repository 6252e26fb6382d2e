"""What a benchmark writes: the machine it ran on, progress on stderr, and its result files.

Each benchmark ends with `publish`: bench/results/<name>.json (the whole report) and
<name>.md (the markdown summary, also printed on stdout). Progress goes to stderr (`log`) so
stdout carries only the result table.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine_info() -> dict[str, Any]:
    import uvicorn

    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in load_average()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "uvicorn": uvicorn.__version__,
        "uvicorn_http": "httptools" if _importable("httptools") else "h11",
        "uvicorn_loop": "uvloop" if _importable("uvloop") else "asyncio",
    }


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the result table."""
    print(message, file=sys.stderr, flush=True)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "n/a"
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(json_path: Path, payload: dict[str, Any], markdown: str) -> Path:
    """The report as JSON at `json_path` and the markdown summary beside it (same name, .md)."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    json_path.with_suffix(".md").write_text(markdown.rstrip() + "\n")
    return json_path


def publish(report: dict[str, Any], render: Callable[[dict[str, Any]], str], name: str,
            results_dir: Path | str | None) -> Path:
    """Finish a benchmark: note the load after it, write JSON + markdown, print the table."""
    report["machine"]["load_average_after"] = [round(x, 2) for x in load_average()]
    markdown = render(report)
    directory = Path(results_dir) if results_dir else RESULTS_DIR
    path = write_results(directory / f"{name}.json", report, markdown)
    print(markdown)
    log(f"results: {path}")
    return path

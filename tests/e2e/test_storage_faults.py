"""Storage faults end to end, against a real `run` subprocess and its real SQLite file:
rows the driver refuses, a full disk, a database file deleted while running."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import MODEL, Service, config_for, wait_until
from tests.e2e.test_service import metric_value



def rows_by_provider(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as connection:
        return dict(connection.execute("select provider, count(*) from probe_result group by provider"))


def probes_logged(log: str, provider_name: str) -> int:
    return len(re.findall(rf"probe {re.escape(MODEL)}/{provider_name}: ", log))


def test_rows_the_driver_refuses_are_dropped_alone_and_the_writer_goes_on(start_service, provider, tmp_path):
    db = tmp_path / "monitor.db"
    service = start_service(
        config_for(("P", provider.url), ("Overflow", provider.url), ("Surrogate", provider.url)),
        db=f"sqlite:///{db}", module="tests.e2e.poisoned_monitor",
    )
    # Poisoned results arrive every second between the good ones; the good ones keep landing.
    wait_until(lambda: rows_by_provider(db).get("P", 0) >= 4, timeout_s=30, what="4 rows of P")
    wait_until(
        lambda: probes_logged(service.log(), "Overflow") >= 2 and probes_logged(service.log(), "Surrogate") >= 2,
        timeout_s=20, what="2 poisoned probes of each kind",
    )
    ready = service.get("/readyz")
    assert ready.status_code == 200 and ready.json()["writer"] is True, ready.text
    metrics = service.get("/metrics").text
    assert (metric_value(metrics, "llm_monitor_dropped_results_total") or 0) >= 4
    assert service.stop(signal.SIGTERM) == 0
    log = service.log()
    stored = rows_by_provider(db)
    assert stored.get("P") == probes_logged(log, "P")  # every good probe stored, none lost
    assert "Overflow" not in stored and "Surrogate" not in stored
    dropped = len(re.findall(r"database refused the probe of m/one/(?:Overflow|Surrogate) ", log))
    assert dropped == probes_logged(log, "Overflow") + probes_logged(log, "Surrogate")
    assert "1180591620717411303424" not in log and "udc80" not in log  # no row values logged
    assert "Traceback" not in log


def history(service: Service):
    return service.get(f"/v1/models/{MODEL}/endpoints/P/probes")


def test_a_database_file_deleted_while_running_is_reported_not_written_into(
    start_service, provider, tmp_path
):
    db = tmp_path / "monitor.db"
    service = start_service(config_for(("P", provider.url)))
    wait_until(lambda: rows_by_provider(db).get("P", 0) >= 2, timeout_s=20, what="first rows")
    db.unlink()  # the open connections would go on writing to the unlinked inode
    wait_until(lambda: service.get("/readyz").status_code == 503, timeout_s=10, what="/readyz 503")
    assert service.get("/readyz").json()["database"] is False
    response = history(service)
    assert response.status_code == 503 and "retry-after" in response.headers
    wait_until(
        lambda: (metric_value(service.get("/metrics").text, "llm_monitor_buffered_results") or 0) >= 2,
        timeout_s=15, what="results buffered instead of written to the deleted file",
    )
    assert "was deleted while open" in service.log()
    service.stop()


@pytest.fixture
def tiny_filesystem(tmp_path: Path):
    """A 2 MiB tmpfs (the tests run as root), unmounted afterwards."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], check=True)
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has no space left."""
    filler = directory / "filler"
    # Unbuffered: a buffered file would raise again on close, flushing the bytes the full
    # filesystem refused (whether any are left depends on how full it was to begin with).
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_a_full_disk_makes_history_and_readiness_503_until_space_returns(
    start_service, provider, tiny_filesystem
):
    db = tiny_filesystem / "monitor.db"
    service = start_service(config_for(("P", provider.url)), db=f"sqlite:///{db}")
    wait_until(lambda: rows_by_provider(db).get("P", 0) >= 2, timeout_s=20, what="first rows")
    assert history(service).status_code == 200
    filler = fill(tiny_filesystem)
    try:
        wait_until(lambda: service.get("/readyz").status_code == 503, timeout_s=20, what="/readyz 503")
        assert service.get("/readyz").json()["database_writes"] is False
        response = history(service)  # would be stale: the newest results wait in the buffer
        assert response.status_code == 503 and response.headers["retry-after"]
        assert "database or disk is full" in service.log()
    finally:
        filler.unlink()
    wait_until(lambda: service.get("/readyz").status_code == 200, timeout_s=20, what="/readyz 200 again")
    wait_until(lambda: history(service).status_code == 200, timeout_s=10, what="history 200 again")
    assert service.stop() == 0
    assert rows_by_provider(db)["P"] == probes_logged(service.log(), "P")  # nothing lost

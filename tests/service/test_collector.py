"""The collector settings the service applies once start-up is done (`settle_collector`)."""

from __future__ import annotations

import gc

from llm_monitor.service import GC_THRESHOLDS, settle_collector


def test_start_up_objects_leave_the_collectors_sight_and_young_collections_come_less_often() -> None:
    before = gc.get_threshold()
    kept = [[index] for index in range(1000)]  # start-up state that lives for the whole run
    try:
        settle_collector()
        assert gc.get_threshold() == GC_THRESHOLDS and GC_THRESHOLDS[0] > before[0]
        assert gc.get_freeze_count() >= len(kept)
        assert not any(item is kept for item in gc.get_objects())  # frozen: not traversed
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # garbage with cycles is still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)

"""Engine parts that need no simulator."""

from __future__ import annotations

import sys
import threading

from line_oa.engine import GIL_SWITCH_INTERVAL, _ShortGilSwitches


def test_the_gil_switch_interval_is_short_while_any_delivery_runs_and_restored_after_the_last():
    before = sys.getswitchinterval()
    switches = _ShortGilSwitches()
    inside, release = threading.Barrier(3), threading.Event()
    seen = []

    def delivery():
        with switches:
            inside.wait()
            release.wait()
            seen.append(sys.getswitchinterval())

    threads = [threading.Thread(target=delivery) for _ in range(2)]
    for thread in threads:
        thread.start()
    inside.wait()  # both deliveries are running
    assert sys.getswitchinterval() == min(before, GIL_SWITCH_INTERVAL)
    release.set()
    for thread in threads:
        thread.join()
    assert seen == [min(before, GIL_SWITCH_INTERVAL)] * 2
    assert sys.getswitchinterval() == before

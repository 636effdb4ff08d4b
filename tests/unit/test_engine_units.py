"""Engine parts that need no simulator."""

from __future__ import annotations

import sys
import threading
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from line_oa.delivery.keys import RETRY_KEY_NAMESPACE, push_retry_key
from line_oa.delivery.writer import GIL_SWITCH_INTERVAL, ShortGilSwitches


def test_the_gil_switch_interval_is_short_while_any_delivery_runs_and_restored_after_the_last():
    before = sys.getswitchinterval()
    switches = ShortGilSwitches()
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


@settings(max_examples=500, deadline=None)
@given(campaign_id=st.text(), run_id=st.text(), line_user_id=st.text())
def test_the_push_retry_key_is_uuid5_of_campaign_run_and_recipient(campaign_id, run_id, line_user_id):
    """A resumed run finds its keys again only if the derivation never changes."""
    name = f"push|{campaign_id}|{run_id}|{line_user_id}"
    assert push_retry_key(campaign_id, run_id, line_user_id) == str(uuid.uuid5(RETRY_KEY_NAMESPACE, name))


def test_the_push_retry_key_of_a_known_recipient_is_unchanged():
    """Pinned: keys of runs logged by earlier releases must still match (namespace included)."""
    assert (
        push_retry_key("welcome_back", "manual__2026-11-30", "U" + "0" * 32)
        == "7883c103-a15f-5988-be90-8c11627f1ed7"
    )

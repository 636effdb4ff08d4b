"""Engine parts that need no simulator."""

from __future__ import annotations

import sys
import threading
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from line_oa.delivery.keys import RETRY_KEY_NAMESPACE, push_retry_key
from line_oa.delivery.writer import GIL_SWITCH_INTERVAL, ShortGilSwitches
from tests.fast_loop import examples


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


@settings(max_examples=examples(500), deadline=None)
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


def test_senders_queued_for_a_rate_permit_leave_without_one_once_nothing_is_left_to_send(monkeypatch):
    """Thirty senders wait for permits at 50/s with three requests to make: three permits are taken and
    the other 27 leave without waiting (each would otherwise wait 20 ms for a permit it cannot use: a
    multicast chunk spent 0.4 s this way after its last request, issue 17)."""
    import asyncio

    from line_oa.delivery import ratelimit

    waits: list[float] = []
    sleep = asyncio.sleep

    async def counted_sleep(seconds: float) -> None:
        waits.append(seconds)
        await sleep(seconds)

    monkeypatch.setattr(ratelimit.asyncio, "sleep", counted_sleep)

    async def scenario() -> list[bool]:
        bucket = ratelimit.TokenBucket(50, burst=1)
        left = [3]

        async def sender() -> bool:
            taken = await bucket.acquire(wanted=lambda: left[0] > 0)
            if taken:
                left[0] -= 1
            return taken

        return await asyncio.gather(*(sender() for _ in range(30)))

    answers = asyncio.run(scenario())
    assert answers == [True] * 3 + [False] * 27
    # two waits, one for each permit after the first; a wake-up that finds 0.9999… of a permit (float
    # rounding) waits once more (seen once under load): still far from one wait for each of 30 senders
    assert len(waits) <= 4, f"{len(waits)} waits for three permits with a burst of one"


def test_a_rate_permit_is_still_waited_for_when_no_condition_is_given():
    import asyncio
    import time

    from line_oa.delivery.ratelimit import TokenBucket

    async def three() -> float:
        bucket = TokenBucket(20, burst=1)
        started = time.monotonic()
        assert [await bucket.acquire() for _ in range(3)] == [True] * 3
        return time.monotonic() - started

    assert asyncio.run(three()) >= 0.09  # two waits of 1/20 s after the burst's one permit

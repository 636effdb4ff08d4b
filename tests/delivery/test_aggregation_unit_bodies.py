"""Every real send carries the campaign's aggregation unit, also when a request is retried (LINE's record)."""

from __future__ import annotations

import pytest

from .conftest import user_id
from .test_engine import recipients, run_chunk


@pytest.mark.parametrize("mode", ["push", "multicast"])
def test_every_request_carries_the_unit_through_retries_and_lost_answers(
    line_conn, ledger_factory, sim, mode
):
    sim.admin.configure(faults={"seed": 1, "accepted_then_lost_rate": 0.5, "error_500_rate": 0.2})
    ledger = ledger_factory()
    # push: 400 requests meet about 200 lost answers and 80 errors, each retried (2,000 took three times as long)
    people = recipients(2000 if mode == "multicast" else 400)
    result = run_chunk(line_conn, ledger, people, mode=mode, aggregation_unit="spring_sale")
    assert result.sent == len(people)
    assert result.retries > 0, "the faults were not injected"
    deliveries = sim.admin.deliveries()
    assert len(deliveries) == len(people)
    assert {delivery["unit"] for delivery in deliveries} == {"spring_sale"}


def test_a_chunk_without_a_unit_sends_none(line_conn, ledger_factory, sim):
    result = run_chunk(line_conn, ledger_factory(), recipients(3), mode="push")
    assert result.sent == 3
    assert [delivery["unit"] for delivery in sim.admin.deliveries()] == [None] * 3
    assert user_id(0) in {delivery["to"] for delivery in sim.admin.deliveries()}

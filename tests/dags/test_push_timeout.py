"""Nothing hangs: each push task carries an ``execution_timeout`` derived from its chunk and its rate."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from line_oa.campaign.loading import load_campaign
from line_oa.integration.dag_factory import (
    PUSH_TIMEOUT_MARGIN,
    PUSH_TIMEOUT_SAFETY,
    build_campaign_dag,
    build_campaign_dags,
    push_task_timeout,
)

from .conftest import SHIPPED, _campaign

# The campaign schema's default retry policy: 8 attempts, 1 s doubling up to 60 s.
DEFAULT_BACKOFF = 1 + 2 + 4 + 8 + 16 + 32 + 60


def campaign_of(tmp_path, **changes):
    document = _campaign("welcome_back", "timeout_test", **changes)
    path = tmp_path / "timeout_test.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return load_campaign(path)


def test_the_safety_factor_and_margin_are_the_documented_ones():
    assert PUSH_TIMEOUT_SAFETY == 3
    assert timedelta(minutes=10) == PUSH_TIMEOUT_MARGIN


@pytest.mark.parametrize("mode", ["multicast", "auto", "push"])
def test_a_tiny_chunk_gets_the_margin_and_the_backoff_span(tmp_path, mode):
    # 100 rows (the smallest chunk): one multicast request at 200/s, or 100 pushes at 2,000/s.
    campaign = campaign_of(tmp_path, **{"content.delivery_mode": mode, "activation.chunk_size": 100})
    # sending x3: 0.015 s or 0.15 s; + 123 s of backoff, rounded up to 124 s; + 10 min
    assert push_task_timeout(campaign) == timedelta(seconds=124 + 600)


def test_a_50000_row_push_chunk_allows_three_times_its_send_time_at_2000_per_second(tmp_path):
    campaign = campaign_of(tmp_path, **{"content.delivery_mode": "push", "activation.chunk_size": 50_000})
    # 50,000 requests / 2,000 per s = 25 s, x3 = 75 s; + 123 s of backoff; + 10 min
    assert push_task_timeout(campaign) == timedelta(seconds=75 + DEFAULT_BACKOFF + 600)


def test_a_50000_row_multicast_chunk_is_100_requests_at_200_per_second(tmp_path):
    campaign = campaign_of(
        tmp_path, **{"content.delivery_mode": "multicast", "activation.chunk_size": 50_000}
    )
    # 100 requests / 200 per s = 0.5 s, x3 = 1.5 s; + 123 s -> 124.5 s, rounded up
    assert push_task_timeout(campaign) == timedelta(seconds=125 + 600)


def test_a_capped_rate_stretches_the_timeout(tmp_path):
    campaign = campaign_of(
        tmp_path,
        **{
            "content.delivery_mode": "push",
            "activation.chunk_size": 5000,
            "activation.rate_limit_per_second": 10,
        },
    )
    # 5,000 requests at 10/s = 500 s, x3 = 1,500 s
    assert push_task_timeout(campaign) == timedelta(seconds=1500 + DEFAULT_BACKOFF + 600)


def test_a_cap_above_lines_limit_does_not_shorten_the_timeout(tmp_path):
    capped = campaign_of(
        tmp_path,
        **{
            "content.delivery_mode": "multicast",
            "activation.chunk_size": 50_000,
            "activation.rate_limit_per_second": 2000,
        },
    )
    # the engine never multicasts faster than LINE's 200/s, whatever the cap says
    assert push_task_timeout(capped) == timedelta(seconds=125 + 600)


def test_the_retry_policy_s_backoff_span_is_added_capped_at_max_backoff(tmp_path):
    campaign = campaign_of(
        tmp_path,
        **{
            "content.delivery_mode": "push",
            "activation.chunk_size": 2000,
            "activation.retry": {"max_attempts": 20, "initial_backoff_seconds": 2, "max_backoff_seconds": 30},
        },
    )
    # 19 waits: 2, 4, 8, 16, then 30 fifteen times; sending 1 s x3
    assert push_task_timeout(campaign) == timedelta(seconds=3 + (2 + 4 + 8 + 16 + 15 * 30) + 600)
    single = campaign_of(
        tmp_path,
        **{
            "content.delivery_mode": "push",
            "activation.chunk_size": 2000,
            "activation.retry": {"max_attempts": 1, "initial_backoff_seconds": 5, "max_backoff_seconds": 5},
        },
    )
    assert push_task_timeout(single) == timedelta(seconds=3 + 600), "one attempt never waits"


def test_every_generated_push_task_carries_its_campaign_s_timeout():
    from airflow.serialization.serialized_objects import DagSerialization

    dags, errors = build_campaign_dags(SHIPPED)
    assert errors == {}
    for path in SHIPPED.glob("*.yaml"):
        campaign = load_campaign(path)
        dag = dags[campaign.dag_id]
        assert dag.get_task("push").execution_timeout == push_task_timeout(campaign)
        # what the scheduler and the workers see
        serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
        assert serialized.get_task("push").execution_timeout == push_task_timeout(campaign)
        for other in ("validate", "extract_segment", "chunk_profiles", "summarize"):
            assert dag.get_task(other).execution_timeout is None


def test_the_push_task_s_timeout_follows_the_campaign_file(tmp_path):
    slow = campaign_of(
        tmp_path,
        **{
            "content.delivery_mode": "push",
            "activation.chunk_size": 50_000,
            "activation.rate_limit_per_second": 50,
        },
    )
    push = build_campaign_dag(slow).get_task("push")
    assert push.execution_timeout == timedelta(seconds=3000 + DEFAULT_BACKOFF + 600)
    assert push.execution_timeout > timedelta(seconds=50_000 / 50), "shorter than the chunk's send time"

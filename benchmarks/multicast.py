"""Case ``multicast``: the engine multicasting to 200,000 recipients at LINE's 200 requests/s limit.

As in a DAG run, the chunk is registered in the delivery log first (``chunk_profiles`` does that),
then ``deliver_chunk`` sends it. The figure that answers "does it sustain 200 requests/s" is the
rate LINE sees: multicasts accepted by the simulator per second between its first and its last
(from the simulator's record of each request's arrival). Side by side in each repetition:

- ``sqlite full_limit``: the client paced at LINE's full 200/s, which shows whether the engine and
  its log can keep up with the limit at all;
- ``sqlite default_pacing``: the project's pacing (``channel_share``: 97% of the limit);
- ``postgres default_pacing``: the same on the PostgreSQL log (the production setup);
- ``sqlite fresh_chunk``: a chunk the log has never seen, registered by ``deliver_chunk`` itself
  before its first multicast (the registration then counts in the send phase).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from benchmarks import delivery, senders
from benchmarks.measure import median, rotated, with_simulator_stats
from benchmarks.push import LATENCY_MS, simulator_config

LINE_MULTICAST_LIMIT = 200
RECIPIENTS = 200_000
FULL_LIMIT_GOAL = 0.98  # of LINE's limit, paced at the full limit
DEFAULT_PACING_GOAL = 0.90  # of LINE's limit, paced 3% under it: the push case's bar

# variant -> (delivery log, client rate as a share of the limit or "default", chunk registered first)
VARIANTS = {
    "sqlite full_limit": ("sqlite", 1.0, True),
    "sqlite default_pacing": ("sqlite", "default", True),
    "postgres default_pacing": ("postgres", "default", True),
    "sqlite fresh_chunk": ("sqlite", "default", False),
}


def line_side_rate(sim) -> tuple[float | None, int]:
    """Return (multicasts accepted per second between LINE's first and last, multicasts accepted)."""
    arrivals: dict[str, datetime] = {}
    for delivery_row in sim.admin.iter_deliveries():
        if delivery_row["endpoint"] == "multicast":
            arrivals.setdefault(delivery_row["request_id"], datetime.fromisoformat(delivery_row["time"]))
    if len(arrivals) < 2:
        return None, len(arrivals)
    span = (max(arrivals.values()) - min(arrivals.values())).total_seconds()
    return ((len(arrivals) - 1) / span if span else None), len(arrivals)


def run(work, reps: int = 3) -> dict[str, Any]:
    from line_oa.delivery.ratelimit import channel_share
    from line_simulator.testing import SimulatorProcess

    def client_rate(share) -> float:
        return channel_share(LINE_MULTICAST_LIMIT) if share == "default" else LINE_MULTICAST_LIMIT * share

    runs = []
    with SimulatorProcess(simulator_config(2000, LINE_MULTICAST_LIMIT)) as sim:
        delivery.define_line_connection(sim.base_url)
        for rep in range(reps):
            for variant in rotated(list(VARIANTS), rep):
                log, share, registered = VARIANTS[variant]
                recipients = senders.user_ids(RECIPIENTS, salt=100 + rep)
                ledger = delivery.open_ledger(log, work, "bench_multicast")
                rate = client_rate(share)

                def action(recipients=recipients, ledger=ledger, rate=rate, registered=registered):
                    outcome = delivery.run_engine(
                        recipients=recipients,
                        ledger=ledger,
                        mode="multicast",
                        rate=rate,
                        registered=registered,
                    )
                    return outcome, line_side_rate(sim)

                (outcome, (line_rate, accepted)), answers = with_simulator_stats(sim, action)
                row = {
                    "variant": variant,
                    "log": log,
                    "client_rate": round(client_rate(share), 1),
                    "registered_first": registered,
                    "rep": rep,
                    "recipients": outcome.recipients,
                    "sent": outcome.sent,
                    "requests": outcome.requests,
                    "retries": outcome.retries,
                    "registration_seconds": (
                        round(outcome.registration_seconds, 3)
                        if outcome.registration_seconds is not None
                        else None
                    ),
                    "wall_seconds": round(outcome.wall_seconds, 3),
                    "send_seconds": round(outcome.send_seconds, 3),
                    "line_side_requests_per_second": round(line_rate, 1) if line_rate else None,
                    "accepted_multicasts": accepted,
                    "requests_per_second": round(outcome.requests_per_send_second, 1),
                    "recipients_per_second_send": round(outcome.sent / outcome.send_seconds, 1),
                    "http_429": int(answers["multicast_status"].get("429", 0)),
                    "failed": outcome.failed,
                }
                print(f"  multicast {variant:24s} rep {rep}: LINE saw {row['line_side_requests_per_second']}/s; "
                      f"{row['requests']} requests in a send phase of {row['send_seconds']:.2f} s "
                      f"= {row['requests_per_second']:.1f}/s; {row['sent']} recipients; 429s {row['http_429']}",
                      flush=True)  # fmt: skip
                runs.append(row)
    table = []
    for variant in VARIANTS:
        rows = [r for r in runs if r["variant"] == variant]
        summary = {"variant": variant, "client_rate": rows[0]["client_rate"], "runs": len(rows)}
        for key in (
            "line_side_requests_per_second",
            "requests_per_second",
            "recipients_per_second_send",
            "registration_seconds",
            "send_seconds",
            "wall_seconds",
            "http_429",
        ):
            summary[f"{key}_median"] = median(r[key] for r in rows)
        summary["line_side_all"] = [r["line_side_requests_per_second"] for r in rows]
        table.append(summary)
    by_variant = {row["variant"]: row for row in table}

    def target(text: str, variant: str, goal: float) -> dict[str, Any]:
        value = by_variant[variant]["line_side_requests_per_second_median"]
        return {"target": text, "value": value, "goal": goal, "met": (value or 0) >= goal}

    limit = LINE_MULTICAST_LIMIT
    targets = [
        target(f"multicasts/s LINE sees, SQLite log, paced at the full limit >= {FULL_LIMIT_GOAL:.0%} of {limit}/s",
               "sqlite full_limit", limit * FULL_LIMIT_GOAL),
        target(f"multicasts/s LINE sees, SQLite log, default pacing >= {DEFAULT_PACING_GOAL:.0%} of {limit}/s",
               "sqlite default_pacing", limit * DEFAULT_PACING_GOAL),
        target(f"multicasts/s LINE sees, PostgreSQL log, default pacing >= {DEFAULT_PACING_GOAL:.0%} of {limit}/s",
               "postgres default_pacing", limit * DEFAULT_PACING_GOAL),
    ]  # fmt: skip
    return {
        "settings": {
            "latency_ms": LATENCY_MS,
            "line_multicast_limit": LINE_MULTICAST_LIMIT,
            "recipients": RECIPIENTS,
            "repetitions": reps,
        },  # fmt: skip
        "runs": runs,
        "table": table,
        "targets": targets,
    }

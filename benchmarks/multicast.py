"""Case ``multicast``: the engine multicasting to 200,000 recipients at LINE's 200 requests/s limit.

Two client rates side by side: the project's default pacing (``channel_share``: 97% of the limit at the time of writing)
and the full limit (200/s), which shows whether the engine itself can sustain 200 requests/s.
"""

from __future__ import annotations

from typing import Any

from benchmarks import delivery, senders
from benchmarks.measure import median, rotated, with_simulator_stats
from benchmarks.push import LATENCY_MS, simulator_config

LINE_MULTICAST_LIMIT = 200
RECIPIENTS = 200_000


def run(work, reps: int = 3) -> dict[str, Any]:
    from line_oa.ratelimit import channel_share
    from line_oa.simulator.testing import SimulatorProcess

    rates = {"default_pacing": channel_share(LINE_MULTICAST_LIMIT), "full_limit": float(LINE_MULTICAST_LIMIT)}
    runs = []
    with SimulatorProcess(simulator_config(2000, LINE_MULTICAST_LIMIT)) as sim:
        delivery.define_line_connection(sim.base_url)
        for rep in range(reps):
            for variant in rotated(list(rates), rep):
                recipients = senders.user_ids(RECIPIENTS, salt=100 + rep)
                ledger = delivery.open_ledger("sqlite", work, "bench_multicast")

                def action(recipients=recipients, ledger=ledger, rate=rates[variant]):
                    return delivery.run_engine(
                        recipients=recipients, ledger=ledger, mode="multicast", rate=rate
                    )

                outcome, answers = with_simulator_stats(sim, action)
                row = {
                    "variant": variant,
                    "client_rate": rates[variant],
                    "rep": rep,
                    "recipients": outcome.recipients,
                    "sent": outcome.sent,
                    "requests": outcome.requests,
                    "retries": outcome.retries,
                    "wall_seconds": round(outcome.wall_seconds, 3),
                    "send_seconds": round(outcome.send_seconds, 3),
                    "requests_per_second": round(outcome.requests_per_send_second, 1),
                    "recipients_per_second_send": round(outcome.sent / outcome.send_seconds, 1),
                    "recipients_per_second_wall": round(outcome.per_second, 1),
                    "http_429": int(answers["multicast_status"].get("429", 0)),
                    "failed": outcome.failed,
                }
                print(f"  multicast {variant:14s} rep {rep}: {row['requests']} requests in {row['send_seconds']:.2f} s "
                      f"= {row['requests_per_second']:.1f}/s; {row['sent']} recipients, wall {row['wall_seconds']:.2f} s, "
                      f"429s {row['http_429']}", flush=True)  # fmt: skip
                runs.append(row)
    table = []
    for variant in rates:
        rows = [r for r in runs if r["variant"] == variant]
        table.append(
            {
                "variant": variant,
                "client_rate": rates[variant],
                "runs": len(rows),
                **{
                    f"{key}_median": median(r[key] for r in rows)
                    for key in (
                        "requests_per_second",
                        "recipients_per_second_send",
                        "recipients_per_second_wall",
                        "send_seconds",
                        "wall_seconds",
                        "http_429",
                    )  # fmt: skip
                },
                "requests_per_second_all": [r["requests_per_second"] for r in rows],
            }
        )
    best = max(row["requests_per_second_median"] or 0 for row in table)
    default = next(row for row in table if row["variant"] == "default_pacing")
    targets = [
        {"target": "engine sustains 200 multicast requests/s (full-limit pacing)", "value": best, "goal": 200 * 0.98,
         "met": best >= 200 * 0.98},
        {"target": "engine sustains 200 multicast requests/s (default pacing, channel_share)",
         "value": default["requests_per_second_median"], "goal": 200 * 0.98,
         "met": (default["requests_per_second_median"] or 0) >= 200 * 0.98},
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

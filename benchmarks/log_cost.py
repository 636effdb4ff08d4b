"""Case ``log_cost``: what the delivery log costs the push engine (SQLite, PostgreSQL, no log)."""

from __future__ import annotations

from typing import Any

from benchmarks import delivery, senders
from benchmarks.measure import median, ratio, rotated, with_simulator_stats
from benchmarks.push import LATENCY_MS, simulator_config

RECIPIENTS = 20_000


def run(work, reps: int = 3) -> dict[str, Any]:
    from line_simulator.testing import SimulatorProcess

    runs = []
    with SimulatorProcess(simulator_config(0, 0)) as sim:
        delivery.define_line_connection(sim.base_url)
        for rep in range(reps):
            for kind in rotated(list(delivery.LEDGER_KINDS), rep):
                recipients = senders.user_ids(RECIPIENTS, salt=200 + rep)
                ledger = delivery.open_ledger(kind, work, "bench_log_cost")

                def action(recipients=recipients, ledger=ledger):
                    return delivery.run_engine(recipients=recipients, ledger=ledger, mode="push", rate=None)

                outcome, answers = with_simulator_stats(sim, action)
                row = {
                    "log": kind,
                    "rep": rep,
                    "sent": outcome.sent,
                    "wall_seconds": round(outcome.wall_seconds, 3),
                    "send_seconds": round(outcome.send_seconds, 3),
                    "per_second": round(outcome.per_second, 1),
                    "http_429": int(answers["push_status"].get("429", 0)),
                    "cpu_seconds": round(outcome.cpu_seconds, 3),
                    "server_cpu_seconds": _round(outcome.server_cpu_seconds),
                }
                print(f"  log_cost rep {rep} {kind:8s}: {row['sent']} sent in {row['wall_seconds']:.2f} s "
                      f"= {row['per_second']:.1f}/s, CPU {row['cpu_seconds']:.2f} s here, "
                      f"{row['server_cpu_seconds']} s in the log's server", flush=True)  # fmt: skip
                runs.append(row)
    table = []
    for kind in delivery.LEDGER_KINDS:
        slower, more_cpu = [], []
        for rep in range(reps):
            row = next(r for r in runs if r["rep"] == rep and r["log"] == kind)
            base = next(r for r in runs if r["rep"] == rep and r["log"] == "none")
            slower.append(ratio(row["wall_seconds"], base["wall_seconds"]) - 1)
            more_cpu.append(
                ratio(row["cpu_seconds"] + (row["server_cpu_seconds"] or 0), base["cpu_seconds"]) - 1
            )
        rows = [r for r in runs if r["log"] == kind]
        table.append(
            {
                "log": kind,
                "runs": len(rows),
                "per_second_median": median(r["per_second"] for r in rows),
                "per_second_all": [r["per_second"] for r in rows],
                "wall_seconds_median": median(r["wall_seconds"] for r in rows),
                "slower_than_no_log_median": median(slower),
                "slower_than_no_log_all": [round(s, 4) for s in slower],
                "cpu_seconds_median": median(r["cpu_seconds"] for r in rows),
                "server_cpu_seconds_median": median(r["server_cpu_seconds"] for r in rows),
                "more_cpu_than_no_log_median": median(more_cpu),
                "more_cpu_than_no_log_all": [round(c, 4) for c in more_cpu],
            }
        )
    targets = [
        {"target": f"{row['log']} log < 10% slower than no log", "value": row["slower_than_no_log_median"],
         "goal": 0.10, "met": (row["slower_than_no_log_median"] or 0) < 0.10}
        for row in table if row["log"] != "none"
    ]  # fmt: skip
    return {
        "settings": {
            "latency_ms": LATENCY_MS,
            "recipients": RECIPIENTS,
            "repetitions": reps,
            "client_rate": None,
            "max_in_flight": 128,
        },  # fmt: skip
        "runs": runs,
        "table": table,
        "targets": targets,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)

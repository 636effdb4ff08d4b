"""Case ``push``: push throughput of the engine against LINE's SDK, HttpHook and a bare aiohttp client.

Two simulators run side by side (30 ms added latency): one with LINE's push limit of 2,000/s, one
with the limit lifted. Every repetition runs every alternative against both, in a rotated order, so
the alternatives share the machine's state of the moment; ratios are taken within a repetition.
"""

from __future__ import annotations

from typing import Any

from benchmarks import delivery, senders
from benchmarks.measure import median, ratio, rotated, with_simulator_stats

LINE_PUSH_LIMIT = 2000
LATENCY_MS = 30
SIZES = {"engine_sqlite": 20_000, "sdk_loop": 300, "http_hook_loop": 300, "sdk_threads_32": 4_000,
         "sdk_threads_128": 4_000, "aiohttp_256": 20_000}  # fmt: skip
LABELS = {
    "engine_sqlite": "(a) project engine, SQLite delivery log, 128 in flight",
    "sdk_loop": "(b) line-bot-sdk v3, plain loop",
    "http_hook_loop": "(d) HttpHook.run in a loop",
    "sdk_threads_32": "(c) line-bot-sdk v3, ThreadPoolExecutor(32)",
    "sdk_threads_128": "(c) line-bot-sdk v3, ThreadPoolExecutor(128)",
    "aiohttp_256": "(e) bare aiohttp, 256 in flight, no retries, no log (ceiling)",
}
SCENARIOS = ("limited", "unlimited")


def simulator_config(push_limit: int, multicast_limit: int = 200, latency_ms: int = LATENCY_MS) -> dict:
    from line_simulator import DEFAULT_TOKEN

    return {
        "channels": [
            {
                "name": "default",
                "token": DEFAULT_TOKEN,
                "quota": {"type": "none"},
                "rate_limits": {"push": push_limit, "multicast": multicast_limit},
            }
        ],
        "faults": {"latency_ms": latency_ms},
    }


def _alternative(name: str, sim, work, client_rate, salt: int):
    recipients = senders.user_ids(SIZES[name], salt=salt)
    if name == "engine_sqlite":
        ledger = delivery.open_ledger("sqlite", work, "bench_push")
        return lambda: delivery.run_engine(
            recipients=recipients, ledger=ledger, mode="push", rate=client_rate
        )
    if name == "sdk_loop":
        return lambda: senders.sdk_loop(sim.base_url, recipients)
    if name == "http_hook_loop":
        return lambda: senders.http_hook_loop(recipients)
    if name.startswith("sdk_threads_"):
        threads = int(name.rsplit("_", 1)[1])
        return lambda: senders.sdk_threads(sim.base_url, recipients, threads)
    if name == "aiohttp_256":
        return lambda: senders.bare_aiohttp(sim.base_url, recipients, 256)
    raise ValueError(name)


def _measure(name: str, scenario: str, rep: int, sim, work, client_rate) -> dict[str, Any]:
    action = _alternative(name, sim, work, client_rate, salt=rep * 16 + SCENARIOS.index(scenario))
    outcome, answers = with_simulator_stats(sim, action)
    row = {
        "alternative": name,
        "scenario": scenario,
        "rep": rep,
        "recipients": outcome.recipients,
        "sent": outcome.sent,
        "seconds": round(getattr(outcome, "wall_seconds", getattr(outcome, "seconds", 0.0)), 3),
        "per_second": round(outcome.per_second, 1),
        "http_429": int(answers["push_status"].get("429", 0)),
        "push_status": answers["push_status"],
    }
    if isinstance(outcome, delivery.EngineOutcome):
        row.update(requests=outcome.requests, retries=outcome.retries, send_seconds=round(outcome.send_seconds, 3),
                   failed=outcome.failed)  # fmt: skip
    print(f"  push {scenario:9s} rep {rep} {name:16s} {row['sent']:>6} sent in {row['seconds']:7.2f} s "
          f"= {row['per_second']:8.1f}/s, 429s {row['http_429']}", flush=True)  # fmt: skip
    return row


def summarize(runs: list[dict]) -> dict[str, Any]:
    """Return medians per (scenario, alternative) and the within-repetition ratios the targets use."""
    reps = sorted({r["rep"] for r in runs})
    by = {(r["scenario"], r["alternative"], r["rep"]): r for r in runs}
    table = []
    for scenario in SCENARIOS:
        for name in LABELS:
            rows = [by[(scenario, name, rep)] for rep in reps if (scenario, name, rep) in by]
            if not rows:
                continue
            ratios = {"to_ceiling": [], "to_target_base": [], "to_sdk_loop": []}
            for rep in reps:
                row, ceiling = by.get((scenario, name, rep)), by.get(("unlimited", "aiohttp_256", rep))
                loop = by.get((scenario, "sdk_loop", rep))
                if not row or not ceiling:
                    continue
                ratios["to_ceiling"].append(ratio(row["per_second"], ceiling["per_second"]))
                ratios["to_target_base"].append(
                    ratio(row["per_second"], min(LINE_PUSH_LIMIT, ceiling["per_second"]))
                )
                if loop:
                    ratios["to_sdk_loop"].append(ratio(row["per_second"], loop["per_second"]))
            table.append(
                {
                    "scenario": scenario,
                    "alternative": name,
                    "label": LABELS[name],
                    "recipients": rows[0]["recipients"],
                    "runs": len(rows),
                    "per_second_median": median(r["per_second"] for r in rows),
                    "per_second_all": [r["per_second"] for r in rows],
                    "to_ceiling_median": median(ratios["to_ceiling"]),
                    "to_line_limit_median": ratio(median(r["per_second"] for r in rows), LINE_PUSH_LIMIT),
                    "to_min_limit_ceiling_median": median(ratios["to_target_base"]),
                    "to_sdk_loop_median": median(ratios["to_sdk_loop"]),
                    "http_429_median": median(r["http_429"] for r in rows),
                    "http_429_all": [r["http_429"] for r in rows],
                }
            )
    engine = {row["scenario"]: row for row in table if row["alternative"] == "engine_sqlite"}
    targets = []
    for scenario, row in engine.items():
        targets.append(
            {
                "target": f"engine >= 90% of min(LINE limit, ceiling), {scenario}",
                "value": row["to_min_limit_ceiling_median"],
                "goal": 0.9,
                "met": (row["to_min_limit_ceiling_median"] or 0) >= 0.9,
            }
        )
        targets.append(
            {
                "target": f"engine >= 20x the SDK plain loop, {scenario}",
                "value": row["to_sdk_loop_median"],
                "goal": 20.0,
                "met": (row["to_sdk_loop_median"] or 0) >= 20,
            }
        )
    return {"table": table, "targets": targets}


def run(work, reps: int = 3) -> dict[str, Any]:
    from line_oa.delivery.ratelimit import channel_share
    from line_simulator.testing import SimulatorProcess

    rates = {"limited": channel_share(LINE_PUSH_LIMIT), "unlimited": None}
    runs: list[dict] = []
    with (
        SimulatorProcess(simulator_config(LINE_PUSH_LIMIT)) as limited,
        SimulatorProcess(simulator_config(0, 0)) as unlimited,
    ):
        sims = {"limited": limited, "unlimited": unlimited}
        for rep in range(reps):
            for index, scenario in enumerate(SCENARIOS):
                sim = sims[scenario]
                delivery.define_line_connection(sim.base_url)
                for name in rotated(list(LABELS), rep + index):
                    runs.append(_measure(name, scenario, rep, sim, work, rates[scenario]))
    return {
        "settings": {
            "latency_ms": LATENCY_MS,
            "line_push_limit": LINE_PUSH_LIMIT,
            "client_rate_limited": rates["limited"],
            "recipients": SIZES,
            "repetitions": reps,
        },
        "runs": runs,
        **summarize(runs),
    }

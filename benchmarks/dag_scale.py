"""Case ``dag_scale``: whole campaign DAG runs on large segments (issue 17).

Scenarios (each one run; the sample CDP without gaps, the LINE simulator at 30 ms with LINE's rate limits,
chunks of 50,000):

- ``multicast_1m``: 1,000,000 profiles multicast, CDP and delivery log on SQLite, ``airflow dags test``;
- ``multicast_1m_pg``: the same with the CDP and the delivery log on PostgreSQL (127.0.0.1:5432, a scratch
  database ``line_oa_bench_<pid>`` created for the run and dropped after it);
- ``multicast_1m_local``: the SQLite run under LocalExecutor, each task its own process
  (``benchmarks.executor_dag_test``); reports every task process's peak resident memory;
- ``push_200k``: 200,000 profiles push, SQLite, ``airflow dags test``;
- ``sample_cdp``: writing the demo's sample CDP of 1,000,000 profiles (its default gaps).

Per task: wall time from the task instances in Airflow's database and memory. Under ``airflow dags test``
tasks run in that one process, so a task's figure is the process tree's highest resident set while it ran
(Airflow itself and what earlier tasks left allocated included). Under LocalExecutor it is the peak of the
task's own process (``airflow worker -- <task instance id>``), with its unique set size beside it.

Choose from the environment (default: every scenario at its own size)::

    LINE_OA_DAG_SCALE=multicast_1m,push_200k        # these scenarios only (comma-separated)
    LINE_OA_DAG_SCALE=multicast_1m:5000000          # a scenario at its own profile count
    LINE_OA_DAG_SCALE_PROFILES=5000000              # every chosen scenario at this profile count
    LINE_OA_DAG_SCALE_CHUNK_SIZE=5000               # chunk size (100 to 50,000; default 50,000)

e.g. ``LINE_OA_DAG_SCALE=multicast_1m LINE_OA_DAG_SCALE_PROFILES=5000000 python -m benchmarks.run dag_scale``.
Targets are checked only for runs at their own size and chunk size; results of scenarios or sizes not
run this time are carried over from ``benchmarks/results/latest.json``, marked with their own date.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from benchmarks.dag_run import run_dag, succeeded

if TYPE_CHECKING:
    import pathlib

SCENARIOS = {
    "multicast_1m": {"profiles": 1_000_000, "mode": "multicast", "runner": "dags_test", "stores": "sqlite"},
    "multicast_1m_pg": {"profiles": 1_000_000, "mode": "multicast", "runner": "dags_test", "stores": "postgres"},
    "multicast_1m_local": {"profiles": 1_000_000, "mode": "multicast", "runner": "local_executor", "stores": "sqlite"},
    "push_200k": {"profiles": 200_000, "mode": "push", "runner": "dags_test", "stores": "sqlite"},
}  # fmt: skip
SAMPLE_CDP = "sample_cdp"
SAMPLE_CDP_PROFILES = 1_000_000
CHUNK_SIZE = 50_000
SCENARIOS_ENV = "LINE_OA_DAG_SCALE"
PROFILES_ENV = "LINE_OA_DAG_SCALE_PROFILES"
CHUNK_SIZE_ENV = "LINE_OA_DAG_SCALE_CHUNK_SIZE"


def _count(text: str, where: str, low: int = 1, high: int | None = None) -> int:
    try:
        value = int(text.strip().replace("_", "").replace(",", ""))
    except ValueError:
        raise SystemExit(f"{where}: {text!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        raise SystemExit(f"{where}: {value} is outside {low}..{high or 'any'}")
    return value


def selection(environ: dict[str, str] | None = None) -> tuple[dict[str, dict], int | None, int]:
    """Return the scenarios to run (with their profile counts), the sample CDP's count (None: skip it)
    and the chunk size, from ``LINE_OA_DAG_SCALE``, ``..._PROFILES`` and ``..._CHUNK_SIZE``."""
    environ = os.environ if environ is None else environ
    chosen = [e.strip() for e in environ.get(SCENARIOS_ENV, "").split(",") if e.strip()]
    chosen = chosen or [*SCENARIOS, SAMPLE_CDP]
    everyone = environ.get(PROFILES_ENV, "").strip()
    chunk_size = _count(environ.get(CHUNK_SIZE_ENV) or str(CHUNK_SIZE), CHUNK_SIZE_ENV, 100, 50_000)
    scenarios: dict[str, dict] = {}
    sample_cdp = None
    for entry in chosen:
        name, _, own = entry.partition(":")
        if name not in (*SCENARIOS, SAMPLE_CDP):
            raise SystemExit(f"{SCENARIOS_ENV}: unknown scenario {name!r}; choose from "
                             f"{', '.join([*SCENARIOS, SAMPLE_CDP])}")  # fmt: skip
        default = SAMPLE_CDP_PROFILES if name == SAMPLE_CDP else SCENARIOS[name]["profiles"]
        profiles = _count(own or everyone or str(default), f"{SCENARIOS_ENV} {name}")
        if name == SAMPLE_CDP:
            sample_cdp = profiles
        else:
            scenarios[name] = {**SCENARIOS[name], "profiles": profiles}
    return scenarios, sample_cdp, chunk_size


def sample_cdp_seconds(work: pathlib.Path, profiles: int = SAMPLE_CDP_PROFILES) -> float:
    """Time writing the demo's sample CDP (its default gaps, repeats and bad ids) of ``profiles``."""
    from line_oa.cli.sample_cdp import generate_sample_cdp

    path = work / "sample_cdp.db"
    started = time.perf_counter()
    cdp = generate_sample_cdp(path, profiles=profiles)
    seconds = time.perf_counter() - started
    path.unlink()
    print(
        f"  dag_scale: sample CDP of {cdp.profiles:,} profiles (demo defaults) in {seconds:.1f} s", flush=True
    )
    return seconds


def _key(result: dict) -> tuple:
    return result["scenario"], result["profiles"], result.get("chunk_size", CHUNK_SIZE)


def carried_over(results: list[dict], sample_cdp: dict | None) -> tuple[list[dict], dict | None]:
    """Add the earlier results (``latest.json``) of scenarios/sizes not run now, marked with their run."""
    from benchmarks.run import load_results

    previous = load_results().get("cases", {}).get("dag_scale") or {}
    stamp = {"date": previous.get("date"), "code": previous.get("code")}
    ran = {_key(r) for r in results}
    kept = []
    for old in previous.get("results", []):
        if _key(old) not in ran:
            kept.append({**old, "carried_over": old.get("carried_over") or stamp})
    if sample_cdp is None and previous.get("sample_cdp"):
        old = previous["sample_cdp"]
        sample_cdp = {**old, "carried_over": old.get("carried_over") or stamp}
    elif sample_cdp is None and previous.get("sample_cdp_1m_seconds") is not None:
        sample_cdp = {"profiles": SAMPLE_CDP_PROFILES, "seconds": previous["sample_cdp_1m_seconds"],
                      "carried_over": stamp}  # fmt: skip
    return results + kept, sample_cdp


def run(work: pathlib.Path, reps: int = 1) -> dict[str, Any]:
    scenarios, sample_profiles, chunk_size = selection()
    chosen_runs = [f"{name} ({spec['profiles']:,})" for name, spec in scenarios.items()]
    if sample_profiles:
        chosen_runs.append(f"sample CDP ({sample_profiles:,})")
    print(f"  dag_scale: {', '.join(chosen_runs) or 'nothing'}; chunks of {chunk_size:,}", flush=True)
    sample_cdp = None
    if sample_profiles:
        sample_cdp = {
            "profiles": sample_profiles,
            "seconds": round(sample_cdp_seconds(work, sample_profiles), 2),
        }
    results = [run_dag(work, name, spec, chunk_size) for name, spec in scenarios.items()]
    results, sample_cdp = carried_over(results, sample_cdp)
    order = list(SCENARIOS)
    results.sort(
        key=lambda r: (order.index(r["scenario"]) if r["scenario"] in order else len(order), r["profiles"])
    )
    chosen = {k: os.environ[k] for k in (SCENARIOS_ENV, PROFILES_ENV, CHUNK_SIZE_ENV) if os.environ.get(k)}
    return {
        "settings": {"scenarios": SCENARIOS, "chunk_size": CHUNK_SIZE, "repetitions": 1, "chosen": chosen,
                     "ran": {name: spec["profiles"] for name, spec in scenarios.items()}, "run_chunk_size": chunk_size},
        "command_env": " ".join(f"{k}={v}" for k, v in chosen.items()),
        "results": results,
        "sample_cdp": sample_cdp,
        "targets": targets({(r["scenario"]): r for r in results if _at_target_size(r)}, sample_cdp),
    }  # fmt: skip


def _at_target_size(result: dict) -> bool:
    spec = SCENARIOS.get(result["scenario"])
    return (
        bool(spec)
        and result["profiles"] == spec["profiles"]
        and result.get("chunk_size", CHUNK_SIZE) == CHUNK_SIZE
    )


def _carried(result: dict) -> str:
    carried = result.get("carried_over")
    return f" [carried over: run {carried.get('date')}]" if carried else ""


def targets(by: dict[str, dict], sample_cdp: dict | None) -> list[dict]:
    """Issue 17's targets, for the scenarios that ran at their own size (1M profiles, 200k push)."""
    rows = []
    if sample_cdp and sample_cdp["profiles"] == SAMPLE_CDP_PROFILES:
        seconds = sample_cdp["seconds"]
        rows.append({"target": "sample CDP: 1,000,000 profiles (demo defaults) written in under 20 s" + _carried(sample_cdp),
                     "value": seconds, "goal": 20, "met": seconds < 20})  # fmt: skip
    walls = (("multicast_1m", "(1) 1M profiles multicast, SQLite: whole run at most 45 s", 45),
             ("multicast_1m_pg", "(2) 1M profiles multicast, CDP and delivery log on PostgreSQL: whole run at most 60 s", 60))  # fmt: skip
    for name, text, goal in walls:
        r = by.get(name)
        if r:
            wall = r["dags_test_wall_seconds"]
            rows.append({"target": text + _carried(r), "value": wall, "goal": goal,
                         "met": succeeded(r) and wall <= goal})  # fmt: skip
    r = by.get("push_200k")
    if r:
        share = r["outside_sends_share_wall"]
        rows.append({"target": "(3) 200k push: time outside the sends at most 8% of the wall time" + _carried(r),
                     "value": share, "goal": 0.08, "met": succeeded(r) and share is not None and share <= 0.08})  # fmt: skip
    r = by.get("multicast_1m_local")
    if r:
        largest = (r.get("largest_task_process") or {}).get("peak_rss_mb")
        rows.append({"target": "(4) 1M profiles multicast under LocalExecutor: no task process above 300 MB (peak RSS)"
                     + _carried(r), "value": largest, "goal": 300,
                     "met": succeeded(r) and largest is not None and largest <= 300})  # fmt: skip
    return rows

"""Run the benchmarks: ``python -m benchmarks.run [CASE...] [--reps N]`` (all cases when none is named).

Writes ``benchmarks/results/latest.json`` (figures of every case run so far; a case run alone
replaces only its own entry) and renders ``docs/benchmarks.md`` from it.

``dag_scale`` runs every scenario at its own size unless ``LINE_OA_DAG_SCALE`` (scenarios, e.g.
``multicast_1m,push_200k`` or ``multicast_1m:5000000``), ``LINE_OA_DAG_SCALE_PROFILES`` (profile count) or
``LINE_OA_DAG_SCALE_CHUNK_SIZE`` choose otherwise: see ``benchmarks/dag_scale.py``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime

from benchmarks.environment import REPO_ROOT, code_version, machine, prepare_airflow_home, python_speed

CASES = {
    "push": "push throughput: engine vs LINE SDK, HttpHook, bare aiohttp; limit 2,000/s and lifted",
    "multicast": "engine multicast, 200,000 recipients at LINE's 200 requests/s",
    "log_cost": "push with the delivery log on SQLite, PostgreSQL, and none",
    "log_writes": "20,000 push outcomes into the PostgreSQL log: task and server CPU, upsert vs a statement a row",
    "parse": "DagBag parse time with 1, 50 and 200 campaign files",
    "dag_scale": "whole DAG runs: 1,000,000 profiles multicast (SQLite, PostgreSQL, LocalExecutor), 200,000 push",
}
RESULTS = REPO_ROOT / "benchmarks" / "results" / "latest.json"
DOC = REPO_ROOT / "docs" / "benchmarks.md"


def load_results() -> dict:
    if RESULTS.exists():
        return json.loads(RESULTS.read_text())
    return {"cases": {}}


def save(results: dict) -> None:
    from benchmarks.report import render

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=False, default=str) + "\n")
    DOC.write_text(render(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help="one of " + ", ".join(CASES))
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each case (dag_scale runs once)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, databases)")
    args = parser.parse_args(argv)
    unknown = [case for case in args.cases if case not in CASES]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; choose from {', '.join(CASES)}")
    cases = args.cases or list(CASES)
    work = prepare_airflow_home()
    results = load_results()
    results["machine"] = machine()
    print(f"benchmarks {', '.join(cases)} in {work}", flush=True)
    try:
        for case in cases:
            print(f"== {case}: {CASES[case]}", flush=True)
            module = importlib.import_module(f"benchmarks.{case}")
            started = time.perf_counter()
            date = datetime.now(UTC).isoformat(timespec="seconds")
            code = code_version()
            speed = python_speed()
            figures = module.run(work, reps=1 if case == "dag_scale" else args.reps)
            command_env = figures.pop("command_env", "")  # the environment that chose what ran (dag_scale)
            figures.update(
                case=case,
                description=CASES[case],
                date=date,
                code=code,
                command=(f"{command_env} " if command_env else "")
                + f"python -m benchmarks.run {case}"
                + (f" --reps {args.reps}" if args.reps != 3 else ""),
                seconds=round(time.perf_counter() - started, 1),
                load_average_after=_load_average(),
                cpu_model=results["machine"].get("cpu_model"),
                python_speed_before=speed,
            )
            results["cases"][case] = figures
            save(results)
            for target in figures.get("targets", []):
                print(
                    f"   {'MET ' if target['met'] else 'MISSED'} {target['target']}: {target['value']}",
                    flush=True,
                )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {RESULTS.relative_to(REPO_ROOT)} and {DOC.relative_to(REPO_ROOT)}")
    return 0


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


if __name__ == "__main__":
    sys.exit(main())

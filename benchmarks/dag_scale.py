"""Case ``dag_scale``: whole campaign DAG runs with ``airflow dags test`` on large segments.

(a) 1,000,000 profiles multicast, (b) 200,000 profiles push, each with the delivery log on SQLite,
the sample CDP on SQLite and the LINE simulator at 30 ms latency with LINE's rate limits. Per task:
wall time from the task instances in Airflow's database and the highest resident memory of the
``airflow dags test`` process tree sampled while the task ran (tasks run in that one process, so a
task's figure includes Airflow itself and what earlier tasks left allocated).
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from benchmarks.environment import REPO_ROOT
from benchmarks.memory import TreeMemorySampler
from benchmarks.push import simulator_config

if TYPE_CHECKING:
    import pathlib

MB = 1_000_000
SCENARIOS = {
    "multicast_1m": {"profiles": 1_000_000, "mode": "multicast"},
    "push_200k": {"profiles": 200_000, "mode": "push"},
}
CHUNK_SIZE = 50_000
CHUNK_DONE = re.compile(r"chunk (\d+) done: (\d+) sent now.*?, ([\d.]+)s, ")


def write_campaign(directory: pathlib.Path, campaign_id: str, mode: str) -> pathlib.Path:
    """Write welcome_back.yaml under a new id with ``delivery_mode`` and 50,000-recipient chunks."""
    text = (REPO_ROOT / "include" / "campaigns" / "welcome_back.yaml").read_text(encoding="utf-8")
    text = re.sub(r"^id: .*$", f"id: {campaign_id}", text, count=1, flags=re.MULTILINE)
    text = re.sub(r"delivery_mode: \w+", f"delivery_mode: {mode}", text, count=1)
    text += f"\nactivation:\n  chunk_size: {CHUNK_SIZE}\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{campaign_id}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment.timestamp()


def task_instances(airflow_db: pathlib.Path, dag_id: str) -> list[dict]:
    with sqlite3.connect(airflow_db) as conn:
        rows = conn.execute(
            "SELECT task_id, map_index, state, start_date, end_date FROM task_instance WHERE dag_id = ? "
            "ORDER BY start_date",
            (dag_id,),
        ).fetchall()
    return [
        {"task_id": t, "map_index": m, "state": s, "start": _timestamp(a), "end": _timestamp(b)}
        for t, m, s, a, b in rows
    ]


def _per_task(instances: list[dict], sampler: TreeMemorySampler) -> list[dict]:
    tasks: dict[str, dict] = {}
    for ti in instances:
        if ti["start"] is None or ti["end"] is None:
            continue
        entry = tasks.setdefault(
            ti["task_id"],
            {
                "task": ti["task_id"],
                "instances": 0,
                "seconds": 0.0,
                "peak_rss_mb": 0.0,
                "states": {},
                "first_start": ti["start"],
            },  # fmt: skip
        )
        entry["instances"] += 1
        entry["seconds"] += ti["end"] - ti["start"]
        entry["states"][ti["state"]] = entry["states"].get(ti["state"], 0) + 1
        peak = sampler.peak_between(ti["start"], ti["end"])
        if peak:
            entry["peak_rss_mb"] = max(entry["peak_rss_mb"], round(peak / MB, 1))
        before = sampler.last_before(ti["start"])
        if before and peak:
            growth = round((peak - before) / MB, 1)
            entry["peak_growth_mb"] = max(entry.get("peak_growth_mb", 0.0), growth)
    ordered = sorted(tasks.values(), key=lambda e: e["first_start"])
    for entry in ordered:
        entry["seconds"] = round(entry["seconds"], 2)
        del entry["first_start"]
    return ordered


def run_scenario(work: pathlib.Path, name: str, profiles: int, mode: str) -> dict[str, Any]:
    from line_oa.cli.demo import demo_environment
    from line_oa.cli.sample_cdp import generate_sample_cdp
    from line_simulator import DEFAULT_TOKEN
    from line_simulator.testing import SimulatorProcess

    home = work / f"dag_scale-{name}"
    (home / "airflow").mkdir(parents=True, exist_ok=True)
    campaign_id = f"scale_{name}"
    campaigns = home / "campaigns"
    write_campaign(campaigns, campaign_id, mode)
    started = time.perf_counter()
    cdp = generate_sample_cdp(
        home / "cdp.db", profiles=profiles, missing_fraction=0, duplicate_fraction=0, malformed_fraction=0,
        blocked_fraction=0, unknown_fraction=0,
    )  # fmt: skip
    cdp_seconds = time.perf_counter() - started
    print(f"  dag_scale {name}: sample CDP of {cdp.profiles:,} profiles in {cdp_seconds:.1f} s", flush=True)
    dag_id = f"line_campaign__{campaign_id}"
    with SimulatorProcess(simulator_config(2000, 200)) as sim:
        env = demo_environment(home, sim.base_url, DEFAULT_TOKEN)
        env["AIRFLOW__LINE_OA__CAMPAIGNS_DIR"] = str(campaigns)
        airflow = [sys.executable, "-m", "airflow"]
        started = time.perf_counter()
        subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        migrate_seconds = time.perf_counter() - started
        log_path = home / "dags_test.log"
        with open(log_path, "w") as log:
            started = time.perf_counter()
            process = subprocess.Popen(
                [*airflow, "dags", "test", dag_id], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            with TreeMemorySampler(process.pid) as sampler:
                returncode = process.wait()
            wall = time.perf_counter() - started
        stats = sim.admin.stats()
    text = log_path.read_text(errors="replace")
    instances = task_instances(home / "airflow" / "airflow.db", dag_id)
    tasks = _per_task(instances, sampler)
    chunks = {int(m.group(1)): float(m.group(3)) for m in CHUNK_DONE.finditer(text)}
    send_seconds = sum(chunks.values())
    starts = [ti["start"] for ti in instances if ti["start"]]
    ends = [ti["end"] for ti in instances if ti["end"]]
    tasks_span = (max(ends) - min(starts)) if starts and ends else None
    result = {
        "scenario": name,
        "profiles": profiles,
        "mode": mode,
        "chunk_size": CHUNK_SIZE,
        "returncode": returncode,
        "cdp_seconds": round(cdp_seconds, 2),
        "db_migrate_seconds": round(migrate_seconds, 2),
        "dags_test_wall_seconds": round(wall, 2),
        "tasks_span_seconds": round(tasks_span, 2) if tasks_span else None,
        "tasks": tasks,
        "process_peak_rss_mb": round(sampler.peak / MB, 1),
        "chunks_done": len(chunks),
        "send_seconds": round(send_seconds, 2),
        "outside_sends_share_wall": round(1 - send_seconds / wall, 4) if wall else None,
        "outside_sends_share_tasks": round(1 - send_seconds / tasks_span, 4) if tasks_span else None,
        "simulator": {
            "deliveries": stats["deliveries"],
            "requests": stats["requests"],
            "rate_limited": stats["rate_limited"],
        },  # fmt: skip
        "log": str(log_path),
    }
    if returncode != 0:
        errors = [ln for ln in text.splitlines() if "Error" in ln or "Traceback" in ln or "FAILED" in ln]
        result["error_excerpt"] = errors[-15:]
    print(f"  dag_scale {name}: exit {returncode}, dags test {wall:.1f} s (tasks {result['tasks_span_seconds']} s), "
          f"sending {send_seconds:.1f} s in {len(chunks)} chunks, peak RSS {result['process_peak_rss_mb']} MB, "
          f"{stats['deliveries']:,} deliveries", flush=True)  # fmt: skip
    for task in tasks:
        print(f"    {task['task']:16s} x{task['instances']:<3d} {task['seconds']:7.2f} s  peak {task['peak_rss_mb']} MB "
              f"(+{task.get('peak_growth_mb', 0)} MB) {task['states']}", flush=True)  # fmt: skip
    return result


def sample_cdp_seconds(work: pathlib.Path, profiles: int = 1_000_000) -> float:
    """Time writing the demo's sample CDP (its default gaps, repeats and bad ids) of ``profiles``."""
    from line_oa.cli.sample_cdp import generate_sample_cdp

    started = time.perf_counter()
    cdp = generate_sample_cdp(work / "sample_cdp_1m.db", profiles=profiles)
    seconds = time.perf_counter() - started
    (work / "sample_cdp_1m.db").unlink()
    print(
        f"  dag_scale: sample CDP of {cdp.profiles:,} profiles (demo defaults) in {seconds:.1f} s", flush=True
    )
    return seconds


def run(work: pathlib.Path, reps: int = 1) -> dict[str, Any]:
    cdp_seconds = sample_cdp_seconds(work)
    results = [run_scenario(work, name, **spec) for name, spec in SCENARIOS.items()]
    by = {r["scenario"]: r for r in results}
    targets = [
        {"target": "sample CDP: 1,000,000 profiles (demo defaults) written in under 20 s", "value": round(cdp_seconds, 2),
         "goal": 20, "met": cdp_seconds < 20},
    ]  # fmt: skip
    a = by.get("multicast_1m")
    if a:
        worst = max((t["peak_rss_mb"] for t in a["tasks"]), default=None)
        targets += [
            {"target": "(a) 1M profiles multicast: whole run under 5 minutes", "value": a["dags_test_wall_seconds"],
             "goal": 300, "met": a["returncode"] == 0 and a["dags_test_wall_seconds"] < 300},
            {"target": "(a) no task above 500 MB (process RSS while the task ran)", "value": worst,
             "goal": 500, "met": a["returncode"] == 0 and worst is not None and worst < 500},
        ]  # fmt: skip
    b = by.get("push_200k")
    if b:
        targets.append(
            {"target": "(b) 200k push: time outside the sends under 15% (of the dags test wall time)",
             "value": b["outside_sends_share_wall"], "goal": 0.15,
             "met": b["returncode"] == 0 and (b["outside_sends_share_wall"] or 1) < 0.15}
        )  # fmt: skip
    return {"settings": {"scenarios": SCENARIOS, "chunk_size": CHUNK_SIZE, "repetitions": 1}, "results": results,
            "sample_cdp_1m_seconds": round(cdp_seconds, 2), "targets": targets}  # fmt: skip

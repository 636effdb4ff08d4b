"""One whole campaign DAG run of ``dag_scale``: set it up, launch it, sample its memory, read its figures.

Two runners:

- ``dags_test``: ``python -m airflow dags test <dag_id>``, every task inside that one process, one after
  another; a task's memory is the whole process tree's resident set sampled while the task ran.
- ``local_executor``: ``python -m benchmarks.executor_dag_test <dag_id>`` (``dag.test(use_executor=True)``
  under LocalExecutor), each task in its own process; a task's memory is the peak resident set of its own
  task process (``airflow worker -- <task instance id>``), with the unique set size beside it.

Two stores: ``sqlite`` (the demo's SQLite CDP and delivery log) or ``postgres`` (both in a scratch
PostgreSQL database, see ``benchmarks.cdp_postgres``).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from benchmarks.environment import REPO_ROOT
from benchmarks.memory import TreeMemorySampler
from benchmarks.pg_server import describe
from benchmarks.push import simulator_config
from line_oa.cli.dag_runs import recorded_run_state, run_outcome

if TYPE_CHECKING:
    import pathlib

MB = 1_000_000
CHUNK_DONE = re.compile(r"chunk (\d+) done: (\d+) sent now.*?, (\d+) requests \((\d+) retries\), ([\d.]+)s, ")
# LINE's rate limits as the benchmarks' simulator enforces them (``simulator_config(2000, 200)``): the
# floor of a chunk's sends is its first attempts at these rates
LINE_LIMITS = {"push": 2000, "multicast": 200}
# A task process: "airflow worker -- <ti id>", or its supervisor's title when sampled before it renamed itself.
TASK_TITLE = re.compile(
    r"^airflow worker -- (?:LocalExecutor: )?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
SUPERVISOR_TITLE = "airflow worker -- LocalExecutor"
RUNNERS = {
    "dags_test": ["-m", "airflow", "dags", "test"],
    "local_executor": ["-m", "benchmarks.executor_dag_test"],
}
#: How each runner's command is named in a run's outcome.
RUNNER_NAMES = {runner: " ".join(args[1:]) for runner, args in RUNNERS.items()}


def write_campaign(directory: pathlib.Path, campaign_id: str, mode: str, chunk_size: int) -> pathlib.Path:
    """Write welcome_back.yaml under a new id with ``delivery_mode`` and ``chunk_size``-recipient chunks."""
    text = (REPO_ROOT / "include" / "campaigns" / "welcome_back.yaml").read_text(encoding="utf-8")
    text = re.sub(r"^id: .*$", f"id: {campaign_id}", text, count=1, flags=re.MULTILINE)
    text = re.sub(r"delivery_mode: \w+", f"delivery_mode: {mode}", text, count=1)
    text += f"\nactivation:\n  chunk_size: {chunk_size}\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{campaign_id}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def cdp_conn_id(campaign_file: pathlib.Path) -> str:
    """Return the CDP connection id of a campaign file (``target_audience.cdp_conn_id`` or its default)."""
    import yaml

    from line_oa.campaign.model import TargetAudience

    audience = yaml.safe_load(campaign_file.read_text(encoding="utf-8")).get("target_audience") or {}
    return str(audience.get("cdp_conn_id") or TargetAudience.model_fields["cdp_conn_id"].default)


def _timestamp(value: str | None) -> float | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment.timestamp()


def task_instances(airflow_db: pathlib.Path, dag_id: str) -> list[dict]:
    """Return the DAG's task instances (every try: ``task_instance`` and ``task_instance_history``)."""
    with contextlib.closing(sqlite3.connect(airflow_db)) as conn:
        rows = conn.execute(
            "SELECT id, task_id, map_index, try_number, state, start_date, end_date FROM task_instance "
            "WHERE dag_id = ? ORDER BY start_date",
            (dag_id,),
        ).fetchall()
        with contextlib.suppress(sqlite3.OperationalError):  # no history table: no earlier tries
            rows += conn.execute(
                "SELECT task_instance_id, task_id, map_index, try_number, state, start_date, end_date "
                "FROM task_instance_history WHERE dag_id = ? ORDER BY start_date",
                (dag_id,),
            ).fetchall()
    return [
        {"id": str(i).replace("-", ""), "task_id": t, "map_index": m, "try_number": n, "state": s,
         "start": _timestamp(a), "end": _timestamp(b)}
        for i, t, m, n, s, a, b in rows
    ]  # fmt: skip


def per_task(instances: list[dict], sampler: TreeMemorySampler) -> list[dict]:
    """Sum wall time per task; memory = the sampled tree's peak while it ran and its growth over the start."""
    tasks: dict[str, dict] = {}
    for ti in instances:
        if ti["start"] is None or ti["end"] is None:
            continue
        entry = tasks.setdefault(
            ti["task_id"],
            {"task": ti["task_id"], "instances": 0, "seconds": 0.0, "peak_rss_mb": None, "states": {},
             "first_start": ti["start"]},
        )  # fmt: skip
        entry["instances"] += 1
        entry["seconds"] += ti["end"] - ti["start"]
        entry["states"][ti["state"]] = entry["states"].get(ti["state"], 0) + 1
        entry["first_start"] = min(entry["first_start"], ti["start"])
        peak = sampler.peak_between(ti["start"], ti["end"])
        if peak:
            entry["peak_rss_mb"] = max(entry["peak_rss_mb"] or 0.0, round(peak / MB, 1))
        before = sampler.last_before(ti["start"])
        if before and peak:
            growth = round((peak - before) / MB, 1)
            entry["peak_growth_mb"] = max(entry.get("peak_growth_mb", 0.0), growth)
    ordered = sorted(tasks.values(), key=lambda e: e["first_start"])
    for entry in ordered:
        entry["seconds"] = round(entry["seconds"], 2)
        del entry["first_start"]
    return ordered


def _task_instance_id(titles: tuple[str, ...]) -> str | None:
    for title in titles:
        match = TASK_TITLE.match(title.strip())
        if match:
            return match.group(1).replace("-", "")
    return None


def _supervisors(sampler: TreeMemorySampler) -> set[int]:
    """Return the pids of LocalExecutor's worker processes (children of the launcher; each supervises a task)."""
    return {
        p.pid
        for p in sampler.processes.values()
        if p.ppid == sampler.pid and any(SUPERVISOR_TITLE in t for t in p.titles)
    }


def task_processes(instances: list[dict], sampler: TreeMemorySampler) -> list[dict]:
    """Return every sampled task process (a supervisor's child titled with its task instance's id)."""
    by_id = {ti["id"]: ti for ti in instances}
    supervisors = _supervisors(sampler)
    found = []
    for peak in sampler.processes.values():
        ti_id = _task_instance_id(peak.titles)
        if ti_id is None or peak.ppid not in supervisors:
            continue
        ti = by_id.get(ti_id, {})
        found.append(
            {"task": ti.get("task_id", "?"), "map_index": ti.get("map_index"), "try_number": ti.get("try_number"),
             "pid": peak.pid, "peak_rss_mb": round(peak.peak_rss / MB, 1),
             "peak_uss_mb": round(peak.peak_uss / MB, 1) if peak.peak_uss is not None else None,
             "samples": peak.samples, "first_seen": peak.first_seen}
        )  # fmt: skip
    found.sort(key=lambda p: p["first_seen"])
    for process in found:
        del process["first_seen"]
    return found


def other_processes(sampler: TreeMemorySampler) -> dict[str, float | None]:
    """Return the peaks of the launcher process and of LocalExecutor's worker (supervisor) processes."""
    supervisors = [sampler.processes[pid].peak_rss for pid in _supervisors(sampler)]
    root = sampler.processes.get(sampler.pid)
    return {
        "launcher_peak_rss_mb": round(root.peak_rss / MB, 1) if root else None,
        "supervisor_peak_rss_mb": round(max(supervisors) / MB, 1) if supervisors else None,
        "supervisor_processes": len(supervisors),
    }


def by_task_process(tasks: list[dict], processes: list[dict]) -> None:
    """Replace each task's tree figure by its largest task process (RSS, USS, which instance)."""
    for entry in tasks:
        mine = [p for p in processes if p["task"] == entry["task"]]
        entry.pop("peak_growth_mb", None)
        largest = max(mine, key=lambda p: p["peak_rss_mb"], default=None)
        entry["peak_rss_mb"] = largest["peak_rss_mb"] if largest else None
        entry["peak_uss_mb"] = max((p["peak_uss_mb"] or 0 for p in mine), default=None) if mine else None
        entry["largest_map_index"] = largest["map_index"] if largest else None
        entry["processes_sampled"] = len(mine)


def chunks_done(home: pathlib.Path, console: str) -> dict[int, dict[str, float]]:
    """Return each chunk's "chunk N done" figures (recipients sent, requests, retries, send seconds): the
    console, then task log files."""
    texts = [console]
    logs = home / "airflow" / "logs"
    if logs.is_dir():
        texts += [path.read_text(errors="replace") for path in sorted(logs.rglob("*.log"))]
    chunks: dict[int, dict[str, float]] = {}
    for text in texts:
        for m in CHUNK_DONE.finditer(text):
            sent, requests, retries = (int(m.group(n)) for n in (2, 3, 4))
            chunks[int(m.group(1))] = {
                "sent": sent,
                "requests": requests,
                "retries": retries,
                "seconds": float(m.group(5)),
            }
    return chunks


def push_tasks(instances: list[dict], chunks: dict[int, dict[str, float]], mode: str) -> list[dict]:
    """Each push task instance (its last try): wall time, its chunk's sends, the rest, and LINE's floor
    for the chunk's first attempts (``LINE_LIMITS``)."""
    last: dict[int, dict] = {}
    for ti in sorted(instances, key=lambda ti: ti["try_number"]):  # a later try replaces an earlier
        if ti["task_id"] == "push" and ti["start"] and ti["end"]:
            last[ti["map_index"]] = ti
    rows = []
    for index, ti in sorted(last.items()):
        chunk = chunks.get(index)
        task = ti["end"] - ti["start"]
        rows.append({
            "map_index": index, "task_seconds": round(task, 2),
            "send_seconds": chunk and chunk["seconds"], "sent": chunk and chunk["sent"],
            "requests": chunk and chunk["requests"],
            "overhead_seconds": chunk and round(task - chunk["seconds"], 2),
            "line_floor_seconds": chunk and round((chunk["requests"] - chunk["retries"]) / LINE_LIMITS[mode], 3),
        })  # fmt: skip
    return rows


def launch(
    runner: str, dag_id: str, env: dict, log_path: pathlib.Path
) -> tuple[int, float, TreeMemorySampler]:
    """Run the DAG once with ``runner``; return its exit status, wall seconds and memory samples."""
    command = [sys.executable, *RUNNERS[runner], dag_id]
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            with TreeMemorySampler(process.pid, unique=runner == "local_executor") as sampler:
                returncode = process.wait()
        except BaseException:
            stop_tree([process.pid])
            raise
        wall = time.perf_counter() - started
    # task or worker processes the launcher left behind, if any (normally none)
    left = stop_tree([pid for pid in sampler.processes if pid != process.pid], seen=sampler.processes)
    if left:
        print(f"  stopped {left} processes the run left behind", flush=True)
    return returncode, wall, sampler


def stop_tree(pids: list[int], seen: dict | None = None) -> int:
    """Terminate these processes and their children (then kill what is left after 10 s); return how many.

    :param seen: the sampler's processes; a pid is then stopped only if it is the process sampled (it
        existed when first seen), not a later process that reused the number.
    """
    import psutil

    processes = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if seen is not None and process.create_time() > seen[pid].first_seen:
                continue
            processes += [process, *process.children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=10)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return len(processes)


def environment(home: pathlib.Path, campaigns: pathlib.Path, base_url: str, postgres: dict | None) -> dict:
    """Return the Airflow environment of a run: the demo's, this run's campaigns, PostgreSQL if given."""
    from line_oa.cli.demo import demo_environment
    from line_oa.delivery_log.connections import DEFAULT_LEDGER_CONN_ID
    from line_simulator import DEFAULT_TOKEN

    env = demo_environment(home, base_url, DEFAULT_TOKEN)
    env["AIRFLOW__LINE_OA__CAMPAIGNS_DIR"] = str(campaigns)
    env.pop("AIRFLOW__LINE_OA__LEDGER_CONN_ID", None)  # the log's connection is the default id
    if postgres is not None:
        definition = json.dumps(postgres)
        for conn_id in {DEFAULT_LEDGER_CONN_ID, *(cdp_conn_id(path) for path in campaigns.glob("*.yaml"))}:
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = definition
    return env


def prepare_cdp(home: pathlib.Path, profiles: int, postgres: dict | None) -> dict[str, Any]:
    """Write the sample CDP (no gaps) to SQLite; copy it into PostgreSQL when ``postgres`` is given."""
    from benchmarks.cdp_postgres import copy_profiles
    from line_oa.cli.sample_cdp import generate_sample_cdp

    started = time.perf_counter()
    cdp = generate_sample_cdp(
        home / "cdp.db", profiles=profiles, missing_fraction=0, duplicate_fraction=0, malformed_fraction=0,
        blocked_fraction=0, unknown_fraction=0,
    )  # fmt: skip
    figures: dict[str, Any] = {"cdp_seconds": round(time.perf_counter() - started, 2)}
    print(f"  sample CDP of {cdp.profiles:,} profiles in {figures['cdp_seconds']:.1f} s", flush=True)
    if postgres is not None:
        copied = copy_profiles(home / "cdp.db", postgres)
        figures["cdp_copy_to_postgres_seconds"] = copied["seconds"]
        print(f"  copied {copied['rows']:,} profiles to PostgreSQL {postgres['schema']} in "
              f"{copied['seconds']:.1f} s", flush=True)  # fmt: skip
    return figures


def run_dag(work: pathlib.Path, name: str, spec: dict, chunk_size: int) -> dict[str, Any]:
    """Run scenario ``name`` once (``spec``: profiles, mode, runner, stores); return its figures."""
    from benchmarks.cdp_postgres import scratch_database, server_watched
    from line_simulator.testing import SimulatorProcess

    home = work / f"dag_scale-{name}-{spec['profiles']}"
    (home / "airflow").mkdir(parents=True, exist_ok=True)
    campaign_id = f"scale_{name}"
    write_campaign(home / "campaigns", campaign_id, spec["mode"], chunk_size)
    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(scratch_database()) if spec["stores"] == "postgres" else None
        figures = prepare_cdp(home, spec["profiles"], postgres)
        with SimulatorProcess(simulator_config(2000, 200)) as sim:
            env = environment(home, home / "campaigns", sim.base_url, postgres)
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
            )
            figures["db_migrate_seconds"] = round(time.perf_counter() - started, 2)
            log_path = home / f"{spec['runner']}.log"
            with server_watched(figures) if postgres else contextlib.nullcontext():
                returncode, wall, sampler = launch(
                    spec["runner"], f"line_campaign__{campaign_id}", env, log_path
                )
            stats = sim.admin.stats()
    figures.update(returncode=returncode, wall=wall, stats=stats, log=log_path, postgres=postgres,
                   parallelism=int(env.get("AIRFLOW__CORE__PARALLELISM", 0)) or None)  # fmt: skip
    return collect(home, name, spec, chunk_size, figures, sampler)


def collect(
    home: pathlib.Path, name: str, spec: dict, chunk_size: int, figures: dict, sampler: TreeMemorySampler
) -> dict[str, Any]:
    """Turn one run's task instances, memory samples and log into the scenario's result."""
    dag_id = f"line_campaign__scale_{name}"
    text = figures["log"].read_text(errors="replace")
    instances = task_instances(home / "airflow" / "airflow.db", dag_id)
    tasks = per_task(instances, sampler)
    chunks = chunks_done(home, text)
    send_seconds = sum(chunk["seconds"] for chunk in chunks.values())
    pushes = push_tasks(instances, chunks, "push" if spec["mode"] == "push" else "multicast")
    starts = [ti["start"] for ti in instances if ti["start"]]
    ends = [ti["end"] for ti in instances if ti["end"]]
    span = (max(ends) - min(starts)) if starts and ends else None
    wall, stats = figures["wall"], figures["stats"]
    result: dict[str, Any] = {
        "scenario": name, "profiles": spec["profiles"], "mode": spec["mode"], "runner": spec["runner"],
        "stores": spec["stores"], "chunk_size": chunk_size, "parallelism": figures["parallelism"],
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "returncode": figures["returncode"],
        "run_state": recorded_run_state(home / "airflow" / "airflow.db", dag_id),
        **{k: figures[k] for k in ("cdp_seconds", "cdp_copy_to_postgres_seconds", "db_migrate_seconds") if k in figures},
        "dags_test_wall_seconds": round(wall, 2), "tasks_span_seconds": round(span, 2) if span else None,
        "tasks": tasks, "memory_basis": "tree", "process_peak_rss_mb": round(sampler.peak / MB, 1),
        "chunks_done": len(chunks), "send_seconds": round(send_seconds, 2), "push_tasks": pushes,
        "line_floor_seconds": round(sum(p["line_floor_seconds"] or 0 for p in pushes), 2),
        "outside_sends_share_wall": round(1 - send_seconds / wall, 4) if wall else None,
        "outside_sends_share_tasks": round(1 - send_seconds / span, 4) if span else None,
        "simulator": {k: stats[k] for k in ("deliveries", "requests", "rate_limited")},
        "log": str(figures["log"]),
    }  # fmt: skip
    if figures["postgres"]:
        result["postgres_database"] = figures["postgres"]["schema"]
        result["postgres_server"] = figures.get("postgres_server")
    if spec["runner"] == "local_executor":
        processes = task_processes(instances, sampler)
        by_task_process(tasks, processes)
        result.update(memory_basis="task_process", task_processes=processes, **other_processes(sampler))
        result["largest_task_process"] = max(processes, key=lambda p: p["peak_rss_mb"], default=None)
        result["tasks_without_sampled_process"] = [t["task"] for t in tasks if not t["processes_sampled"]]
    result["outcome"] = run_outcome(
        result["returncode"], result["run_state"], RUNNER_NAMES[spec["runner"]]
    ).message
    if not succeeded(result):
        errors = [ln for ln in text.splitlines() if "Error" in ln or "Traceback" in ln or "FAILED" in ln]
        result["error_excerpt"] = errors[-15:]
    print_result(result)
    return result


def succeeded(r: dict) -> bool:
    """Whether a run succeeded: its recorded state (results from before it was kept: the exit status)."""
    return r["run_state"] == "success" if "run_state" in r else r["returncode"] == 0


def print_result(r: dict) -> None:
    print(f"  dag_scale {r['scenario']} ({r['profiles']:,} profiles, {r['runner']}, {r['stores']}): "
          f"{r.get('outcome', 'exit ' + str(r['returncode']))}, wall {r['dags_test_wall_seconds']:.1f} s (tasks {r['tasks_span_seconds']} s), sending "
          f"{r['send_seconds']:.1f} s in {r['chunks_done']} chunks ({_share(r['outside_sends_share_wall'])} of the wall "
          f"outside), tree peak RSS {r['process_peak_rss_mb']} MB, {r['simulator']['deliveries']:,} deliveries",
          flush=True)  # fmt: skip
    for t in r["tasks"]:
        memory = f"peak {t['peak_rss_mb']} MB"
        if r["memory_basis"] == "task_process":
            memory = (f"task process peak RSS {t['peak_rss_mb']} MB (USS {t.get('peak_uss_mb')} MB, "
                      f"{t['processes_sampled']} sampled, largest map index {t.get('largest_map_index')})")  # fmt: skip
        elif "peak_growth_mb" in t:
            memory += f" (+{t['peak_growth_mb']} MB)"
        print(
            f"    {t['task']:16s} x{t['instances']:<3d} {t['seconds']:7.2f} s  {memory} {t['states']}",
            flush=True,
        )
    if r.get("postgres_server"):
        print(f"    {describe(r['postgres_server'])}", flush=True)
    if r.get("largest_task_process"):
        p = r["largest_task_process"]
        print(f"    largest task process: {p['task']}[{p['map_index']}] pid {p['pid']} {p['peak_rss_mb']} MB RSS "
              f"({p['peak_uss_mb']} MB USS); supervisors up to {r['supervisor_peak_rss_mb']} MB, launcher "
              f"{r['launcher_peak_rss_mb']} MB", flush=True)  # fmt: skip


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"

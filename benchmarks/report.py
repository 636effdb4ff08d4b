"""Render ``docs/benchmarks.md`` from the results of ``benchmarks/results/latest.json``.

The figures and tables are generated; the reading of them (what misses a target and why) is kept
by hand in ``benchmarks/analysis.md`` and appended as is.
"""

from __future__ import annotations

from benchmarks.environment import REPO_ROOT
from benchmarks.pg_server import describe

ANALYSIS = REPO_ROOT / "benchmarks" / "analysis.md"


def _n(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _x(value) -> str:
    return "–" if value is None else f"{value:.2f}x"


def _pct(value) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _machine(m: dict) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
    return [
        f"- Machine: {m.get('nproc')} cores ({m.get('cpu_model')}), {m.get('memory_gib')} GiB RAM, "
        f"Linux {m.get('kernel')}, at the last run (each case names the processor it ran on, where recorded); "
        f"shared with other engineers' test runs (load average at the last start: "
        f"{', '.join(str(x) for x in m.get('load_average_at_start', []))}; single-core speed: "
        f"{m.get('python_speed_at_start', '?')} M steps/s of a fixed Python loop, `benchmarks/environment.py`).",
        f"- Python {m.get('python')}; {versions}.",
        f"- Code at the last run's start: `{m.get('git_commit')}` (`+changes`: plugins/ or dags/ differed from "
        "that commit); each case names the code it ran on.",
    ]


def _case_header(case: dict) -> list[str]:
    return [
        f"Command: `{case['command']}` · run {case['date']} on code `{case.get('code', '?')}`"
        + (f" on an {case['cpu_model']}" if case.get("cpu_model") else "")
        + (
            f" (single-core speed before it: {case['python_speed_before']} M Python loop steps/s)"
            if case.get("python_speed_before")
            else ""
        )
        + f" · {case['seconds']:.0f} s · "
        f"load average after: {', '.join(str(x) for x in case.get('load_average_after') or [])}",
        "",
    ]


def _push(case: dict) -> list[str]:
    s = case["settings"]
    lines = [
        f"Simulator at {s['latency_ms']} ms added latency. **limited**: LINE's push limit {s['line_push_limit']:,}/s "
        f"at the simulator and the project's pacing ({s['client_rate_limited']:.0f}/s, `channel_share(2000)`) in "
        "the engine; **unlimited**: simulator rate 0 and client rate None. Each repetition runs every "
        "alternative against both simulators in a rotated order; ratios are taken within a repetition, then "
        f"the median of {s['repetitions']} is shown. recipients/s = recipients answered 2xx / wall time "
        "(for the engine: the whole `deliver_chunk` call, registering the rows in the log included). "
        "The ceiling is (e) against the unlimited simulator.",
        "",
    ]
    for scenario in ("limited", "unlimited"):
        rows = [r for r in case["table"] if r["scenario"] == scenario]
        lines += [f"**{scenario}**", ""]
        lines += _table(
            ["alternative", "recipients", "recipients/s (median)", "all runs", "÷ ceiling", "÷ LINE 2,000/s",
             "÷ min(limit, ceiling)", "÷ SDK plain loop", "429s (median)"],
            [[r["label"], _n(r["recipients"]), _n(r["per_second_median"], 1),
              " / ".join(_n(v) for v in r["per_second_all"]), _x(r["to_ceiling_median"]),
              _pct(r["to_line_limit_median"]), _pct(r["to_min_limit_ceiling_median"]),
              _x(r["to_sdk_loop_median"]), _n(r["http_429_median"])] for r in rows],
        )  # fmt: skip
        lines.append("")
    return lines


def _multicast(case: dict) -> list[str]:
    if any("line_side_all" not in row for row in case["table"]):
        return [
            "Figures from an earlier version of this case: rerun `python -m benchmarks.run multicast`.",
            "",
        ]
    s = case["settings"]
    lines = [
        f"{s['recipients']:,} recipients (400 multicasts of 500), {s['latency_ms']} ms latency, simulator multicast "
        f"limit {s['line_multicast_limit']}/s. The chunk is registered in the delivery log first, as "
        "`chunk_profiles` does in a DAG run (registration s), except in `fresh_chunk`, where `deliver_chunk` "
        "registers it before its first multicast. **LINE sees** = multicasts the simulator accepted per second "
        "between the first and the last (its record of arrivals): the sustained rate. send phase = requests over "
        "`ChunkResult.duration_seconds` (start-up and the last answer included); wall = the whole "
        f"`deliver_chunk` call. Median of {s['repetitions']}.",
        "",
    ]
    lines += _table(
        ["variant (client rate)", "LINE sees /s", "all runs", "send phase /s", "recipients/s (send)",
         "registration s", "send s", "wall s", "429s"],
        [[f"{r['variant']} ({r['client_rate']:.0f}/s)", _n(r["line_side_requests_per_second_median"], 1),
          " / ".join(_n(v, 1) for v in r["line_side_all"]), _n(r["requests_per_second_median"], 1),
          _n(r["recipients_per_second_send_median"]), _n(r["registration_seconds_median"], 2),
          _n(r["send_seconds_median"], 2), _n(r["wall_seconds_median"], 2), _n(r["http_429_median"])]
         for r in case["table"]],
    )  # fmt: skip
    return [*lines, ""]


def _log_cost(case: dict) -> list[str]:
    s = case["settings"]
    lines = [
        f"Push, {s['recipients']:,} recipients, limit lifted, {s['latency_ms']} ms latency, {s['max_in_flight']} in "
        "flight; the three logs alternate within each repetition. % slower = wall time / no-log wall time − 1 "
        f"in the same repetition, median of {s['repetitions']}. CPU = the sending process's (its log writer "
        "thread included), server = the PostgreSQL log's server process; % more CPU = (CPU + server) / "
        "no-log CPU − 1 in the same repetition (the simulator's CPU is not counted), which a shared "
        "machine's drift moves less than the wall time.",
        "",
    ]
    rows = []
    for r in case["table"]:
        rows.append([r["log"], _n(r["per_second_median"], 1), " / ".join(_n(v) for v in r["per_second_all"]),
                     _n(r["wall_seconds_median"], 2), _pct(r["slower_than_no_log_median"]),
                     " / ".join(_pct(v) for v in r["slower_than_no_log_all"]),
                     _n(r.get("cpu_seconds_median"), 2), _n(r.get("server_cpu_seconds_median"), 2),
                     _pct(r.get("more_cpu_than_no_log_median")),
                     " / ".join(_pct(v) for v in r.get("more_cpu_than_no_log_all") or [])])  # fmt: skip
    lines += _table(
        ["delivery log", "recipients/s (median)", "all runs", "wall s", "slower than no log", "all runs",
         "CPU s", "server CPU s", "more CPU than no log", "all runs"],
        rows,
    )  # fmt: skip
    return [*lines, ""]


def _log_writes(case: dict) -> list[str]:
    s = case["settings"]
    lines = [
        f"{s['outcomes']:,} push outcomes written to a fresh run of the PostgreSQL log in batches of {s['batch']}, "
        "the two ways alternating: the log's `upsert` (one statement a batch from a JSON array) and one "
        "statement a row (pipelined `executemany`, as the log wrote before). task CPU = the benchmark's "
        "process, server CPU = its PostgreSQL backend (from `/proc`). Median of "
        f"{s['repetitions']}; all CPU of a statement a row / all CPU of the upsert: "
        f"{_n(case.get('cpu_ratio'), 2)}.",
        "",
    ]
    lines += _table(
        ["way", "wall s", "all runs", "task CPU s", "all runs", "server CPU s", "all runs"],
        [[r["way"], *(x for k in ("wall_seconds", "task_cpu_seconds", "server_cpu_seconds")
                      for x in (_n(r[f"{k}_median"], 3 if k != "server_cpu_seconds" else 2),
                                " / ".join(_n(v, 2) for v in r[f"{k}_all"])))] for r in case["table"]],
    )  # fmt: skip
    return [*lines, ""]


def _parse(case: dict) -> list[str]:
    lines = [
        "Copies of `include/campaigns/welcome_back.yaml` (id = file stem) in a temporary `AIRFLOW__LINE_OA__CAMPAIGNS_DIR`; "
        "`DagBag(dag_folder=<repo>/dags)` in a fresh interpreter each time. total = the child process's wall "
        "time; import = `from airflow.dag_processing.dagbag import DagBag` (Airflow's import and configuration); "
        f"fill = `DagBag(...)` itself. Median of {case['settings']['repetitions']}.",
        "",
    ]
    lines += _table(
        ["campaign files", "DAGs", "import errors", "total s", "import s", "fill s", "fill, all runs"],
        [[r["files"], r["dags"], r["import_errors"], _n(r["total_seconds_median"], 2), _n(r["import_seconds_median"], 2),
          _n(r["fill_seconds_median"], 2), " / ".join(_n(v, 2) for v in r["fill_seconds_all"])] for r in case["table"]],
    )  # fmt: skip
    return [*lines, ""]


def _dag_scale(case: dict) -> list[str]:
    lines = [
        "Whole runs of `line_campaign__<id>` with the environment of `line_oa.cli.demo` (SQLite metadata DB, "
        "sample CDP without gaps, simulator at 30 ms with LINE's limits, `core.parallelism` 4) and chunks of "
        "50,000 unless a run says otherwise. Runner **dags test**: `python -m airflow dags test`, every task inside that one process, one "
        "after another. Runner **LocalExecutor**: `python -m benchmarks.executor_dag_test` "
        "(`dag.test(use_executor=True)`, the execution API on a thread of that process), each task in its own "
        "process, forked by a LocalExecutor worker. Stores **sqlite**: CDP and delivery log in SQLite files; "
        "**postgres**: both in a scratch PostgreSQL database (127.0.0.1:5432) made for the run, the profiles "
        "copied in with `COPY`. Wall = the runner process's wall time (`db migrate` and writing the CDP not "
        "included). Task times from Airflow's `task_instance` rows (mapped push: sum over the instances). Memory, "
        "sampled every 0.1 s: under dags test, the highest resident set of the whole process tree while the task "
        "ran, Airflow itself (about 195 MB before the first task) and what earlier tasks left allocated included, "
        '"growth" being that peak minus the resident set just before the task started; under LocalExecutor, the '
        "peak resident set (RSS) of the task's own process (`airflow worker -- <task instance id>`; largest over "
        "a mapped task's instances) and its unique set size (USS: what no other process shares; a forked task "
        "process's RSS counts the pages it inherited from its parents). One run each. Scenarios and sizes are "
        "chosen with `LINE_OA_DAG_SCALE` (e.g. `multicast_1m,push_200k` or `multicast_1m:5000000`), "
        "`LINE_OA_DAG_SCALE_PROFILES` and `LINE_OA_DAG_SCALE_CHUNK_SIZE` (see `benchmarks/dag_scale.py`); a "
        "result not rerun is carried over and marked with its own run date.",
        "",
    ]
    if case.get("sample_cdp"):
        s = case["sample_cdp"]
        lines += [f"Sample CDP with the demo's gaps: {s['profiles']:,} profiles written in {s['seconds']:.1f} s"
                  f"{_carried_note(s)}.", ""]  # fmt: skip
    for r in case["results"]:
        lines += [_dag_scale_paragraph(r), ""]
        lines += _dag_scale_tasks(r)
        lines += _dag_scale_push_tasks(r)
        if r.get("error_excerpt"):
            lines += ["", "Error lines from the run's log:", "", "```", *r["error_excerpt"], "```"]
        lines.append("")
    return lines


def _carried_note(r: dict) -> str:
    carried = r.get("carried_over")
    return (
        f" (carried over from the run of {carried.get('date')} on code `{carried.get('code')}`)"
        if carried
        else ""
    )


def _dag_scale_paragraph(r: dict) -> str:
    runner = {"dags_test": "dags test", "local_executor": "LocalExecutor"}[r.get("runner", "dags_test")]
    copy = r.get("cdp_copy_to_postgres_seconds")
    outcome = r.get("outcome", f"exit status {r['returncode']}")
    text = (
        f"**{r['scenario']}**: {r['profiles']:,} profiles, {r['mode']}, {runner}, stores {r.get('stores', 'sqlite')}, "
        f"chunks of {r.get('chunk_size', 50_000):,}{_carried_note(r)}; {outcome}; wall "
        f"{r['dags_test_wall_seconds']:.1f} s (first task start to last task end {_n(r['tasks_span_seconds'], 1)} s; "
        f"`db migrate` {r['db_migrate_seconds']:.1f} s, the sample CDP {r['cdp_seconds']:.1f} s"
        + (f" and its copy to PostgreSQL {copy:.1f} s" if copy is not None else "")
        + f' not included); sending (sum of "chunk N done ... X s") {r["send_seconds"]:.1f} s in {r["chunks_done"]} '
        f"chunks; time outside the sends {_pct(r['outside_sends_share_wall'])} of the wall time "
        f"({_pct(r['outside_sends_share_tasks'])} of the task span); process tree peak (RSS summed over its processes) "
        f"{r['process_peak_rss_mb']:,.0f} MB; "
        f"simulator: {r['simulator']['deliveries']:,} deliveries, {r['simulator']['rate_limited']} rate-limited answers."
    )
    if r.get("postgres_server"):
        text += f" {describe(r['postgres_server'])}."
    largest = r.get("largest_task_process")
    if largest:
        text += (
            f" Largest task process: `{largest['task']}`"
            + (f"[{largest['map_index']}]" if _map_index(largest["map_index"]) != "–" else "")
            + f", {largest['peak_rss_mb']:,.0f} MB RSS ({_n(largest['peak_uss_mb'])} MB USS); LocalExecutor worker "
            f"(supervisor) processes up to {_n(r.get('supervisor_peak_rss_mb'))} MB, the launching process "
            f"{_n(r.get('launcher_peak_rss_mb'))} MB."
        )
    if r.get("tasks_without_sampled_process"):
        text += f" No task process sampled (ran under 0.1 s or not at all): {', '.join(r['tasks_without_sampled_process'])}."
    return text


def _map_index(value: int | None) -> str:
    return "–" if value is None or value < 0 else str(value)


def _dag_scale_tasks(r: dict) -> list[str]:
    def states(t: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in t["states"].items())

    def floor(t: dict) -> str:  # only the push tasks send to LINE
        return _n(r.get("line_floor_seconds"), 2) if t["task"] == "push" else "–"

    if r.get("memory_basis") == "task_process":
        return _table(
            ["task", "instances", "wall s", "LINE's floor s", "task process peak RSS MB", "peak USS MB",
             "largest: map index", "processes sampled", "states"],
            [[t["task"], t["instances"], _n(t["seconds"], 2), floor(t), _n(t["peak_rss_mb"]), _n(t.get("peak_uss_mb")),
              _map_index(t.get("largest_map_index")), t["processes_sampled"],
              states(t)] for t in r["tasks"]],
        )  # fmt: skip
    return _table(
        ["task", "instances", "wall s", "LINE's floor s", "peak RSS MB", "growth MB", "states"],
        [[t["task"], t["instances"], _n(t["seconds"], 2), floor(t), _n(t["peak_rss_mb"]),
          _n(t.get("peak_growth_mb")), states(t)] for t in r["tasks"]],
    )  # fmt: skip


def _dag_scale_push_tasks(r: dict) -> list[str]:
    """Each push task: its wall time, its chunk's sends ("chunk N done"), the rest, and LINE's floor."""
    pushes = r.get("push_tasks")
    if not pushes:
        return []
    limit = "200 multicasts/s" if r["mode"] != "push" else "2,000 pushes/s"
    lines = ["", f"Push tasks: the task's wall time, its chunk's sends, the rest (claim, reading the chunk, "
             f"the last outcomes, Airflow around the task) and LINE's floor for the chunk's first attempts "
             f"({limit}).", ""]  # fmt: skip
    rows = [[p["map_index"], _n(p["sent"]), _n(p["requests"]), _n(p["task_seconds"], 2), _n(p["send_seconds"], 2),
             _n(p["overhead_seconds"], 2), _n(p["line_floor_seconds"], 2)] for p in pushes]  # fmt: skip
    total = [sum(p[k] or 0 for p in pushes) for k in ("task_seconds", "send_seconds", "overhead_seconds")]
    rows.append(["all", _n(sum(p["sent"] or 0 for p in pushes)), _n(sum(p["requests"] or 0 for p in pushes)),
                 *(_n(v, 2) for v in total), _n(r.get("line_floor_seconds"), 2)])  # fmt: skip
    return lines + _table(
        ["map index", "sent", "requests", "task s", "sends s", "rest s", "LINE's floor s"], rows
    )


SECTIONS = {
    "push": _push,
    "multicast": _multicast,
    "log_cost": _log_cost,
    "log_writes": _log_writes,
    "parse": _parse,
    "dag_scale": _dag_scale,
}


def _targets(results: dict) -> list[str]:
    rows = []
    for name in SECTIONS:
        case = results["cases"].get(name)
        for t in (case or {}).get("targets", []):
            value = t["value"]
            shown = _n(value, 3) if isinstance(value, float) else _n(value)
            rows.append([name, t["target"], shown, _n(t["goal"], 2), "met" if t["met"] else "**missed**"])
    return _table(["case", "target", "measured (median)", "goal", ""], rows)


def render(results: dict) -> str:
    """Return the whole Markdown page."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`.venv/bin/python -m benchmarks.run`; one case: `python -m benchmarks.run CASE`, "
        "cases `push`, `multicast`, `log_cost`, `log_writes`, `parse`, `dag_scale`; `make bench-push` = the push case). "
        "Machine-readable figures, every run included: `benchmarks/results/latest.json`. Everything runs on one "
        "machine: the LINE simulator (`line_simulator`, one process, one core) and the client share the two "
        "cores, so a client that is faster than the simulator can serve is measured against the simulator's "
        "ceiling, not LINE's. Read the figures as sizes on a shared machine, not promises.",
        "",
        *_machine(results.get("machine", {})),
        "",
        "## Targets",
        "",
        *_targets(results),
        "",
    ]
    titles = {"push": "Push throughput (`push`)", "multicast": "Multicast (`multicast`)",
              "log_cost": "Cost of the delivery log (`log_cost`)",
              "log_writes": "Writing outcomes to the PostgreSQL log (`log_writes`)", "parse": "DAG folder parse time (`parse`)",
              "dag_scale": "Whole DAG runs (`dag_scale`)"}  # fmt: skip
    for name, section in SECTIONS.items():
        case = results["cases"].get(name)
        if not case:
            continue
        lines += [f"## {titles[name]}", "", *_case_header(case), *section(case)]
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text().rstrip(), ""]
    return "\n".join(lines)

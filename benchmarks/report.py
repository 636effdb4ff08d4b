"""Render ``docs/benchmarks.md`` from the results of ``benchmarks/results/latest.json``.

The figures and tables are generated; the reading of them (what misses a target and why) is kept
by hand in ``benchmarks/analysis.md`` and appended as is.
"""

from __future__ import annotations

from benchmarks.environment import REPO_ROOT

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
        f"Linux {m.get('kernel')}; shared with other engineers' test runs (load average at the last start: "
        f"{', '.join(str(x) for x in m.get('load_average_at_start', []))}).",
        f"- Python {m.get('python')}; {versions}.",
        f"- Code at the last run's start: `{m.get('git_commit')}` (`+changes`: plugins/ or dags/ differed from "
        "that commit); each case names the code it ran on.",
    ]


def _case_header(case: dict) -> list[str]:
    return [
        f"Command: `{case['command']}` · run {case['date']} on code `{case.get('code', '?')}` · "
        f"{case['seconds']:.0f} s · "
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
        f"in the same repetition, median of {s['repetitions']}.",
        "",
    ]
    lines += _table(
        ["delivery log", "recipients/s (median)", "all runs", "wall s", "slower than no log", "all runs"],
        [[r["log"], _n(r["per_second_median"], 1), " / ".join(_n(v) for v in r["per_second_all"]),
          _n(r["wall_seconds_median"], 2), _pct(r["slower_than_no_log_median"]),
          " / ".join(_pct(v) for v in r["slower_than_no_log_all"])] for r in case["table"]],
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
        "`python -m airflow dags test line_campaign__<id>` with the environment of `line_oa.cli.demo` "
        "(SQLite metadata DB, SQLite CDP without gaps, SQLite delivery log, simulator at 30 ms with LINE's limits) "
        "and chunks of 50,000. Task times from Airflow's `task_instance` rows (mapped push: sum over the "
        "instances). Memory: `airflow dags test` runs every task inside its one process, one after another, so per-task "
        "memory is the highest resident set of that process (and any children) sampled every 0.1 s while the task "
        "ran; it includes Airflow itself (about 195 MB before the first task) and whatever earlier tasks left allocated; "
        '"growth" is that peak minus the resident set just before the task started. One run each.',
        "",
    ]
    for r in case["results"]:
        lines += [
            f"**{r['scenario']}**: {r['profiles']:,} profiles, {r['mode']}; exit status {r['returncode']}; "
            f"`dags test` wall {r['dags_test_wall_seconds']:.1f} s (first task start to last task end "
            f"{_n(r['tasks_span_seconds'], 1)} s; `db migrate` {r['db_migrate_seconds']:.1f} s and the sample CDP "
            f'{r["cdp_seconds"]:.1f} s not included); sending (sum of "chunk N done ... X s") {r["send_seconds"]:.1f} s '
            f"in {r['chunks_done']} chunks; time outside the sends {_pct(r['outside_sends_share_wall'])} of the wall "
            f"time ({_pct(r['outside_sends_share_tasks'])} of the task span); process peak {r['process_peak_rss_mb']:,.0f} MB; "
            f"simulator: {r['simulator']['deliveries']:,} deliveries, {r['simulator']['rate_limited']} rate-limited answers.",
            "",
        ]
        lines += _table(
            ["task", "instances", "wall s", "peak RSS MB", "growth MB", "states"],
            [[t["task"], t["instances"], _n(t["seconds"], 2), _n(t["peak_rss_mb"]), _n(t.get("peak_growth_mb")),
              ", ".join(f"{k} {v}" for k, v in t["states"].items())] for t in r["tasks"]],
        )  # fmt: skip
        if r.get("error_excerpt"):
            lines += ["", "Error lines from the run's log:", "", "```", *r["error_excerpt"], "```"]
        lines.append("")
    return lines


SECTIONS = {
    "push": _push,
    "multicast": _multicast,
    "log_cost": _log_cost,
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
        "cases `push`, `multicast`, `log_cost`, `parse`, `dag_scale`; `make bench-push` = the push case). "
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
              "log_cost": "Cost of the delivery log (`log_cost`)", "parse": "DAG folder parse time (`parse`)",
              "dag_scale": "Whole DAG runs (`dag_scale`)"}  # fmt: skip
    for name, section in SECTIONS.items():
        case = results["cases"].get(name)
        if not case:
            continue
        lines += [f"## {titles[name]}", "", *_case_header(case), *section(case)]
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text().rstrip(), ""]
    return "\n".join(lines)

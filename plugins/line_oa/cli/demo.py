"""Deliver the demo campaign end to end: ``make demo`` / ``python -m line_oa.cli.demo``.

Sets up everything under ``data/demo`` (Airflow home on SQLite, a 50,000-profile sample CDP, the
delivery log), starts the LINE simulator with some recipients blocked or unknown, runs the
``welcome_back`` campaign's DAG for real with ``airflow dags test`` (judged by the run's recorded
state: ``line_oa.cli.dag_runs``), lets 1, 3 and 7 days pass at the simulator and runs
``line_campaign_insights`` for each, prints the summary, LINE's figures, the report's path and the
campaign's state, and stops the simulator.

It runs from a source checkout only: it uses the checkout's ``dags/`` and ``include/`` (campaign file,
segment SQL), which a wheel does not carry.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

from line_oa.cli.dag_runs import recorded_run_state, run_outcome
from line_oa.paths import source_checkout

DEMO_CAMPAIGN = "welcome_back"
#: Days after sending on which the demo lets LINE's insights be collected (the simulator's clock moves).
INSIGHT_DAYS = (1, 3, 7)


def checkout_root() -> pathlib.Path:
    """Return the source checkout the demo runs from; exit with a message when the package is installed."""
    root = source_checkout()
    if root is None:
        raise SystemExit("the demo runs from a source checkout (make demo): it needs its dags/ and include/")
    return root


def demo_environment(
    home: pathlib.Path, simulator_url: str, token: str, *, base: dict[str, str] | None = None
) -> dict[str, str]:
    """Return the environment of the Airflow commands: local paths, connections, 2-core settings.

    :param base: the environment to start from (default: this process's).
    """
    checkout = checkout_root()
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(checkout / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(checkout / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'airflow.db'}",
            "AIRFLOW__LINE_OA__DATA_DIR": str(home),
            "AIRFLOW_CONN_LINE_OA_DEFAULT": json.dumps(
                {
                    "conn_type": "line_oa",
                    "host": simulator_url,
                    "password": token,
                    "extra": {
                        "workspaces": "retail_jp",
                        "push_rate_limit": 2000,
                        "multicast_rate_limit": 200,
                    },
                }
            ),
            "AIRFLOW_CONN_LINE_OA_CDP": json.dumps({"conn_type": "sqlite", "host": str(home / "cdp.db")}),
        }
    )
    return env


def run_demo(profiles: int, home: pathlib.Path) -> int:
    from line_oa.cli.sample_cdp import generate_sample_cdp
    from line_simulator import DEFAULT_TOKEN
    from line_simulator.testing import SimulatorProcess

    started = time.monotonic()
    shutil.rmtree(home, ignore_errors=True)
    (home / "airflow").mkdir(parents=True)
    cdp = generate_sample_cdp(home / "cdp.db", profiles=profiles)
    print(
        f"sample CDP: {cdp.profiles:,} profiles ({cdp.missing_line_id:,} without a LINE user id, "
        f"{cdp.duplicate_line_id:,} sharing one, {cdp.malformed_line_id:,} malformed) -> {cdp.path}"
    )
    config = {"recipients": {"blocked": cdp.blocked_user_ids, "unknown": cdp.unknown_user_ids}}
    with SimulatorProcess(config) as simulator:
        print(f"LINE simulator on {simulator.base_url} ({len(cdp.blocked_user_ids)} blocked, "
              f"{len(cdp.unknown_user_ids)} unknown recipients)")  # fmt: skip
        env = demo_environment(home, simulator.base_url, DEFAULT_TOKEN)
        airflow = [sys.executable, "-m", "airflow"]
        subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        dag_id = f"line_campaign__{DEMO_CAMPAIGN}"
        print(f"running {dag_id} with `airflow dags test` ...", flush=True)
        log_path = home / "dags_test.log"
        with open(log_path, "w") as log:
            result = subprocess.run(
                [*airflow, "dags", "test", dag_id], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        stats = simulator.admin.stats()
        outcome = run_outcome(result.returncode, recorded_run_state(home / "airflow" / "airflow.db", dag_id))
        print(f"the DAG run {outcome.message} (full log: {log_path})")
        if outcome.succeeded:
            collect_insights(simulator, env, home)

    summary = _print_summary(env, log_path)
    print(f"LINE simulator: {stats['deliveries']:,} deliveries recorded, {stats['billed']:,} billed, "
          f"{stats['rate_limited']} rate-limited answers")  # fmt: skip
    state = subprocess.run(
        [sys.executable, "-m", "line_oa", "status", DEMO_CAMPAIGN], env=env, capture_output=True, text=True
    )
    print(f"campaign state: {state.stdout.strip() or state.stderr.strip()}")
    if summary and summary.get("report_path"):
        print(f"delivery report: {summary['report_path']}")
    print(f"demo finished in {time.monotonic() - started:.0f} s")
    return 0 if outcome.succeeded else 1


def collect_insights(simulator, env: dict[str, str], home: pathlib.Path, days=INSIGHT_DAYS) -> None:
    """Let days pass at the simulator and run ``line_campaign_insights`` for each; print the figures."""
    from datetime import UTC, datetime, timedelta

    sent = datetime.now(UTC)
    log_path = home / "insights_dags_test.log"
    with open(log_path, "w") as log:
        for day in days:
            simulator.admin.set_clock((sent + timedelta(days=day)).isoformat())
            when = (sent + timedelta(days=day)).isoformat()
            print(f"{day} days later at LINE: running line_campaign_insights for {when} ...", flush=True)
            subprocess.run(
                [sys.executable, "-m", "airflow", "dags", "test", "line_campaign_insights", when,
                 "-c", json.dumps({"backoff_seconds": 5})],
                env=env, stdout=log, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
    figures = subprocess.run(
        [sys.executable, "-m", "line_oa", "insights", DEMO_CAMPAIGN], env=env, capture_output=True, text=True
    )
    print(figures.stdout.rstrip() or figures.stderr.strip() or f"no figures: see {log_path}")


def _print_summary(env: dict[str, str], log_path: pathlib.Path) -> dict | None:
    """Print the run's summary block from the stored summary row; return the summary."""
    import sqlite3

    from line_oa.integration.summary import summary_block

    db = pathlib.Path(env["AIRFLOW__LINE_OA__DATA_DIR"]) / "delivery_log.db"
    row = None
    if db.exists():
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT summary_json FROM line_campaign_summary WHERE campaign_id = ? ORDER BY finished_at DESC",
                (DEMO_CAMPAIGN,),
            ).fetchone()
    if row is None:
        print(f"no summary was written: see {log_path}")
        return None
    summary = json.loads(row[0])
    summary["report_path"] = None  # printed on its own line below
    print(summary_block(summary))
    return json.loads(row[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m line_oa.cli.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=50_000, help="profiles in the sample CDP")
    parser.add_argument(
        "--home", type=pathlib.Path, help="working folder (default: the checkout's data/demo)"
    )
    args = parser.parse_args(argv)
    home = args.home or checkout_root() / "data" / "demo"
    return run_demo(args.profiles, home.resolve())


if __name__ == "__main__":
    sys.exit(main())

"""Run one DAG once under LocalExecutor, each task in its own process: ``python -m benchmarks.executor_dag_test DAG_ID``.

``airflow dags test`` runs every task inside its one process. Here ``dag.test(use_executor=True)`` hands
each task to LocalExecutor instead: a worker process starts a supervisor, which forks the task process
(titled ``airflow worker -- <task instance id>``); the task talks to Airflow's execution API over HTTP.
That API is served by a child process of this one (``InProcessExecutionAPI``, auth bypassed, as
tests/reliability/conftest.py does), as an api-server process serves it in a deployment: LocalExecutor
forks its workers, and they their task processes, from this process, so a task process inherits this
process's memory but not the API's (it did when the API ran on a thread here: about 45 MB more in every
task process). No api-server, scheduler or dag-processor is started, and nothing outlives this process.

``dag.test()`` queues every ready task instance at once, without the scheduler's per-task limits; this
module applies ``max_active_tis_per_dagrun``/``max_active_tis_per_dag`` the way the scheduler does (the
campaign's push tasks run one at a time, as they do in a deployment). Environment: the caller's (``line_oa.cli.demo.demo_environment``: SQLite
metadata DB, ``core.parallelism`` = the number of LocalExecutor worker processes). Exit status 0 when the
DAG run succeeded, 1 otherwise; the run's id and state are printed on the last line.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SERVE_API = "--serve-execution-api"


def serve_execution_api(port: int) -> None:
    """Serve Airflow's execution API on 127.0.0.1:``port`` until this process is stopped."""
    import uvicorn
    from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI

    uvicorn.run(InProcessExecutionAPI().app, host="127.0.0.1", port=port, log_level="warning")


def start_execution_api(port: int) -> subprocess.Popen:
    """Start the execution API in a child process; return it once it accepts connections."""
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.executor_dag_test", SERVE_API, str(port)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the execution API exited with status {server.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return server
        time.sleep(0.1)
    server.kill()
    raise SystemExit("the execution API did not start within 60 s")


ACTIVE_STATES = ("scheduled", "queued", "running")


def apply_task_concurrency_limits() -> None:
    """Make ``DagRun.update_state`` hold back task instances past their task's concurrency limit.

    A held-back instance stays unscheduled and is offered again on ``dag.test()``'s next loop (about
    once a second while tasks run), as the scheduler leaves it for a later loop.
    """
    from collections import Counter

    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance

    original = DagRun.update_state

    def update_state(self, *args, **kwargs):
        schedulable, callback = original(self, *args, **kwargs)
        session = kwargs["session"]
        active = Counter(
            task_id
            for (task_id,) in session.query(TaskInstance.task_id).filter(
                TaskInstance.dag_id == self.dag_id,
                TaskInstance.run_id == self.run_id,
                TaskInstance.state.in_(ACTIVE_STATES),
            )
        )
        kept = []
        for ti in schedulable:
            limits = [
                getattr(ti.task, name, None)
                for name in ("max_active_tis_per_dagrun", "max_active_tis_per_dag")
            ]
            limits = [limit for limit in limits if limit is not None]
            if limits and active[ti.task_id] >= min(limits):
                continue
            active[ti.task_id] += 1
            kept.append(ti)
        return kept, callback

    DagRun.update_state = update_state


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == SERVE_API:
        serve_execution_api(int(argv[1]))
        return 0
    if len(argv) != 1:
        raise SystemExit(__doc__.splitlines()[0])
    dag_id = argv[0]
    port = _free_port()
    # Before Airflow reads its configuration: the workers and task processes inherit these.
    os.environ["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/"
    os.environ["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
    from airflow.dag_processing.dagbag import DagBag

    server = start_execution_api(port)
    apply_task_concurrency_limits()
    try:
        bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        if dag_id not in bag.dags:
            print(f"DAG {dag_id} not found; import errors: {bag.import_errors}", flush=True)
            return 1
        dag_run = bag.dags[dag_id].test(use_executor=True)
        state = str(getattr(dag_run, "state", None))
        print(f"executor_dag_test: run {getattr(dag_run, 'run_id', None)} state {state}", flush=True)
        return 0 if state.endswith("success") else 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

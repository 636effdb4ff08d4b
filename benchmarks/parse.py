"""Case ``parse``: time to parse the dags/ folder with 1, 50 and 200 campaign files.

Each parse runs in a fresh interpreter, so Airflow's imports are counted; the child also reports
the time spent importing ``DagBag`` (interpreter + Airflow) and filling it (the DAG files themselves).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from benchmarks.environment import REPO_ROOT
from benchmarks.measure import median

if TYPE_CHECKING:
    import pathlib

FILE_COUNTS = (1, 50, 200)
TEMPLATE = REPO_ROOT / "include" / "campaigns" / "welcome_back.yaml"
CHILD = """
import json, time
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
imported = time.perf_counter()
bag = DagBag(dag_folder={dags!r})
filled = time.perf_counter()
print("BENCH " + json.dumps({{"import_seconds": imported - started, "fill_seconds": filled - imported,
      "dags": len(bag.dags), "import_errors": {{k: v[:300] for k, v in bag.import_errors.items()}}}}))
"""


def write_campaigns(directory: pathlib.Path, count: int) -> None:
    """Write ``count`` copies of welcome_back.yaml, each with the id of its file name."""
    directory.mkdir(parents=True, exist_ok=True)
    text = TEMPLATE.read_text(encoding="utf-8")
    for n in range(count):
        stem = f"bench_campaign_{n:04d}"
        body = re.sub(r"^id: .*$", f"id: {stem}", text, count=1, flags=re.MULTILINE)
        (directory / f"{stem}.yaml").write_text(body, encoding="utf-8")


def child_environment(work: pathlib.Path, campaigns: pathlib.Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(work / "airflow-parse"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LINE_OA__CAMPAIGNS_DIR": str(campaigns),
        }
    )
    return env


def parse_once(work: pathlib.Path, campaigns: pathlib.Path, *, profile: pathlib.Path | None = None) -> dict:
    code = CHILD.format(dags=str(REPO_ROOT / "dags"))
    command = [sys.executable, "-c", code]
    if profile is not None:
        script = work / "parse_child.py"
        script.write_text(code)
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), str(script)]
    started = time.perf_counter()
    done = subprocess.run(command, env=child_environment(work, campaigns), capture_output=True, text=True)
    total = time.perf_counter() - started
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"parsing failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return {"total_seconds": total, **json.loads(line[len("BENCH ") :])}


def run(work: pathlib.Path, reps: int = 3) -> dict[str, Any]:
    runs = []
    folders = {}
    for count in FILE_COUNTS:
        folders[count] = work / f"campaigns-{count}"
        write_campaigns(folders[count], count)
    for rep in range(reps):
        for count in FILE_COUNTS:
            row = {"files": count, "rep": rep, **parse_once(work, folders[count])}
            print(f"  parse {count:3d} files rep {rep}: total {row['total_seconds']:.2f} s, import "
                  f"{row['import_seconds']:.2f} s, fill {row['fill_seconds']:.2f} s, {row['dags']} DAGs, "
                  f"{len(row['import_errors'])} import errors", flush=True)  # fmt: skip
            runs.append(row)
    table = []
    for count in FILE_COUNTS:
        rows = [r for r in runs if r["files"] == count]
        table.append(
            {
                "files": count,
                "runs": len(rows),
                "dags": rows[0]["dags"],
                "import_errors": len(rows[0]["import_errors"]),
                **{
                    f"{k}_median": median(r[k] for r in rows)
                    for k in ("total_seconds", "import_seconds", "fill_seconds")
                },
                "total_seconds_all": [round(r["total_seconds"], 3) for r in rows],
                "fill_seconds_all": [round(r["fill_seconds"], 3) for r in rows],
            }
        )
    big = table[-1]
    targets = [
        {"target": f"{big['files']} campaign files parse in under 2 s (whole process)", "value": big["total_seconds_median"],
         "goal": 2.0, "met": big["total_seconds_median"] < 2.0},
        {"target": f"{big['files']} campaign files: DagBag fill under 2 s", "value": big["fill_seconds_median"],
         "goal": 2.0, "met": big["fill_seconds_median"] < 2.0},
    ]  # fmt: skip
    return {
        "settings": {"file_counts": FILE_COUNTS, "repetitions": reps},
        "runs": runs,
        "table": table,
        "targets": targets,
    }

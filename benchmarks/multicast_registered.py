"""Multicast send phase on a chunk already registered in the delivery log, as in a DAG run.

``python -m benchmarks.multicast_registered [RECIPIENTS]`` (default 200,000): registers the chunk
as ``chunk_profiles`` does, then times ``deliver_chunk`` alone against the simulator at 30 ms latency
and LINE's 200 multicasts/s. The ``multicast`` case counts the registration in the send phase.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    recipients = int((argv or sys.argv[1:] or ["200000"])[0])
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench_airflow_"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from line_oa.engine import deliver_chunk, pending_rows
    from line_oa.hooks import LineOAHook
    from line_oa.ledger import DeliveryLedger, sqlite_file_hook
    from line_oa.ratelimit import channel_share
    from line_oa.simulator import DEFAULT_TOKEN
    from line_oa.simulator.testing import SimulatorProcess

    with SimulatorProcess({"faults": {"latency_ms": 30}}) as sim:
        os.environ["AIRFLOW_CONN_BENCH_MULTICAST"] = json.dumps(
            {"conn_type": "line_oa", "host": sim.base_url, "password": DEFAULT_TOKEN}
        )
        hook = LineOAHook(line_oa_conn_id="bench_multicast")
        ledger = DeliveryLedger(
            sqlite_file_hook(tempfile.mkdtemp(prefix="bench_log_") + "/log.db"), campaign_id="b", run_id="r"
        )
        people = [(f"p{i:07d}", f"U{i:032x}") for i in range(recipients)]
        started = time.monotonic()
        ledger.add(pending_rows("b", "r", 0, people))
        registered = time.monotonic() - started
        result = deliver_chunk(
            client_factory=lambda: hook.async_client(),
            ledger=ledger,
            chunk_index=0,
            recipients=people,
            messages=[{"type": "text", "text": "hi"}],
            mode="multicast",
            rate=channel_share(200),
        )
        rate = result.requests / result.duration_seconds
        print(
            f"registered {recipients:,} rows in {registered:.2f} s; send phase {result.duration_seconds:.2f} s "
            f"for {result.requests} multicasts = {rate:.1f} requests/s ({result.sent:,} sent, "
            f"{sim.admin.stats()['rate_limited']} rate-limited answers)"
        )
        ledger.close()
        hook.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Profile one engine delivery with cProfile: ``python -m benchmarks.profile_engine {push,multicast} [N] [unlimited]``.

Used to explain the targets the engine misses: prints the functions with the most own time and the
most cumulative time of one ``deliver_chunk`` call (SQLite delivery log, 30 ms latency, LINE's limits
and the project's pacing, or no limit and no pacing with ``unlimited``).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import sys

from benchmarks.environment import prepare_airflow_home


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mode = argv[0] if argv else "multicast"
    count = int(argv[1]) if len(argv) > 1 else (200_000 if mode == "multicast" else 20_000)
    work = prepare_airflow_home()
    from benchmarks import delivery, senders
    from benchmarks.push import simulator_config
    from line_oa.delivery.ratelimit import channel_share
    from line_simulator.testing import SimulatorProcess

    unlimited = "unlimited" in argv[2:]
    with SimulatorProcess(simulator_config(0, 0) if unlimited else simulator_config(2000, 200)) as sim:
        delivery.define_line_connection(sim.base_url)
        ledger = delivery.open_ledger("sqlite", work, f"profile_{mode}")
        recipients = senders.user_ids(count, salt=999)
        rate = None if unlimited else channel_share(200 if mode == "multicast" else 2000)
        profiler = cProfile.Profile()
        profiler.enable()
        outcome = delivery.run_engine(recipients=recipients, ledger=ledger, mode=mode, rate=rate)
        profiler.disable()
    shutil.rmtree(work, ignore_errors=True)
    print(f"{mode}: {outcome.sent} sent, {outcome.requests} requests, wall {outcome.wall_seconds:.2f} s, "
          f"send phase {outcome.send_seconds:.2f} s")  # fmt: skip
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(18)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())

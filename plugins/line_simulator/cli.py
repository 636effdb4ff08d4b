"""Start the simulator from the command line: ``python -m line_simulator [options]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

from aiohttp import web

from line_simulator.app import create_app
from line_simulator.config import FAULT_RATE_KEYS, ConfigError, deep_merge, load_file
from line_simulator.runtime import Simulator

log = logging.getLogger("line_simulator")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; every option overrides the same setting of ``--config``."""
    parser = argparse.ArgumentParser(
        prog="python -m line_simulator", description="Serve a local LINE Messaging API simulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8099, help="port to bind; 0 picks a free one")
    parser.add_argument("--config", help="YAML configuration file (see docs/simulator.md)")
    parser.add_argument("--token", help="access token of the channel named 'default'")
    parser.add_argument("--quota", type=int, help="monthly quota of every channel (messages); -1: none")
    parser.add_argument("--no-rate-limits", action="store_true", help="turn every channel's rate limits off")
    parser.add_argument(
        "--blocked-fraction", type=float, help="fraction of user ids that blocked the account"
    )
    parser.add_argument("--unknown-fraction", type=float, help="fraction of user ids unknown to the channel")
    parser.add_argument("--multicast-unknown", choices=["skip", "reject"], help="multicast to unknown ids")
    parser.add_argument("--seed", type=int, help="seed of the fault-injection random generator")
    parser.add_argument("--latency-ms", type=float, help="latency added to faulty endpoints")
    parser.add_argument("--latency-jitter-ms", type=float, help="random extra latency, up to this")
    for key in FAULT_RATE_KEYS:
        parser.add_argument("--" + key.replace("_", "-"), type=float, help=f"fault rate 0..1 ({key})")
    parser.add_argument("--hang-seconds", type=float, help="how long a hanging request hangs")
    parser.add_argument("--outage-seconds", type=float, help="answer 503 to send endpoints for N simulated s")
    parser.add_argument("--log-level", default="WARNING", help="log level on stderr (default WARNING)")
    parser.add_argument(
        "--exit-with-stdin",
        action="store_true",
        help="stop when standard input closes: a program that starts the simulator with a pipe there "
        "ends it by ending, even when it is killed (SimulatorProcess does)",
    )
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Return the partial configuration: the file's, overridden by the command-line options."""
    config: dict[str, Any] = load_file(args.config) if args.config else {}
    faults = {
        key: getattr(args, key)
        for key in (
            *FAULT_RATE_KEYS,
            "seed",
            "latency_ms",
            "latency_jitter_ms",
            "hang_seconds",
            "outage_seconds",
        )
        if getattr(args, key) is not None
    }
    recipients = {
        key: getattr(args, key)
        for key in ("blocked_fraction", "unknown_fraction", "multicast_unknown")
        if getattr(args, key) is not None
    }
    config = deep_merge(config, {"faults": faults, "recipients": recipients})
    channels = config.setdefault("channels", [{"name": "default"}])
    if args.token:
        default = next((channel for channel in channels if channel.get("name", "default") == "default"), None)
        if default is None:
            channels.append({"name": "default", "token": args.token})
        else:
            default["token"] = args.token
    for channel in channels:
        channel.setdefault("name", "default")
        if channel["name"] == "default":
            channel.setdefault("token", "sim-token-default")
        if args.quota is not None:
            channel["quota"] = (
                {"type": "none"} if args.quota < 0 else {"type": "limited", "value": args.quota}
            )
        if args.no_rate_limits:
            channel["rate_limits"] = dict.fromkeys(("push", "multicast", "validate", "quota", "other"), 0)
    return config


async def serve(simulator: Simulator, host: str, port: int, *, exit_with_stdin: bool = False) -> None:
    """Serve until SIGTERM or SIGINT (or, with ``exit_with_stdin``, until standard input closes); print
    the listening URL on stdout first, flushed."""
    runner = web.AppRunner(create_app(simulator), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    site = web.SockSite(runner, sock, backlog=4096)
    await site.start()
    bound_port = sock.getsockname()[1]
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # before announcing the port: a parent may signal at once
        loop.add_signal_handler(signum, stop.set)
    if exit_with_stdin:
        watcher = threading.Thread(target=_wait_for_eof, args=(loop, stop), name="stdin-eof", daemon=True)
        watcher.start()
    print(f"LINE simulator listening on http://{url_host}:{bound_port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _wait_for_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Read standard input until it closes (the parent holding the pipe ended), then stop serving.

    Reads the descriptor itself: a daemon thread blocked in ``sys.stdin.buffer`` holds that object's
    lock, and the interpreter aborted at exit (SIGABRT) when it found it taken: 1 SIGTERM in 3 from a
    shell, every one under pytest."""
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    with contextlib.suppress(RuntimeError):  # the loop already closed: the server stopped first
        loop.call_soon_threadsafe(stop.set)


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; return the process exit status."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        simulator = Simulator(config_from_args(args))
    except (ConfigError, OSError) as error:
        print(f"line_simulator: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(simulator, args.host, args.port, exit_with_stdin=args.exit_with_stdin))
    except OSError as error:
        print(f"line_simulator: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0

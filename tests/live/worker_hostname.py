"""The ``[core] hostname_callable`` of the live test's Celery workers.

Two workers on one machine share its host name, so each is started with ``LINE_OA_LIVE_WORKER``
(worker1, worker2) and reports that as its task instances' ``hostname``, as two machines would.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """Return the worker's name from ``LINE_OA_LIVE_WORKER``, else the machine's host name."""
    return os.environ.get("LINE_OA_LIVE_WORKER") or socket.getfqdn()

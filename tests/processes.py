"""Helpers about other processes, shared by the tests."""

from __future__ import annotations

import psutil


def ended(process: psutil.Process) -> bool:
    """Whether ``process`` has exited: gone, or a zombie its parent has not reaped (or was killed)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True

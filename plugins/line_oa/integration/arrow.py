"""Arrow as the staging code uses it: its buffers from the C library's allocator.

Arrow allocates from its bundled mimalloc unless told otherwise, and mimalloc keeps the pages of
freed buffers in a heap per thread (Parquet reads and writes on Arrow's thread pool). Staging a
1,000,000-profile segment in chunks of 50,000 so peaked 258-265 MB in a fresh process, against 228 MB
with the system allocator, at the same speed (benchmarks/analysis.md, seventeenth session): room
under issue 17's 300 MB a task process. Arrow picks its default allocator once, when it is imported,
from ``ARROW_DEFAULT_MEMORY_POOL``; so this module asks for ``system`` just for that import (and puts
the environment back), unless the variable is already set, which then decides. If something imported
Arrow earlier, its allocator stays: switching a running Arrow's default pool (``pa.set_memory_pool``)
saved only half as much and was dropped. (The SIGABRT once blamed on it was Arrow's thread pool
aborting a normal interpreter exit, apache/arrow#34314, which happens with either allocator; Airflow's
task processes leave by ``os._exit`` and do not reach that teardown.)
"""

from __future__ import annotations

import os
import sys

POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
_ASK = POOL_VARIABLE not in os.environ and "pyarrow" not in sys.modules

if _ASK:
    os.environ[POOL_VARIABLE] = "system"
try:
    import pyarrow as pa
    import pyarrow.parquet as pq
finally:
    if _ASK:
        del os.environ[POOL_VARIABLE]

__all__ = ["pa", "pq"]

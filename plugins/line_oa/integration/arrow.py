"""Arrow as the staging code uses it: its buffers from the C library's allocator.

Arrow allocates from its bundled mimalloc unless told otherwise, and mimalloc keeps the pages of
freed buffers in a heap per thread (Parquet reads and writes on Arrow's thread pool). Staging a
1,000,000-profile segment in chunks of 50,000 so peaked 258-265 MB in a fresh process, against 228 MB
with the system allocator, at the same speed (benchmarks/analysis.md, seventeenth session): room
under issue 17's 300 MB a task process. Arrow picks its default allocator once, when it is imported,
from ``ARROW_DEFAULT_MEMORY_POOL``; so this module asks for ``system`` just for that import (and puts
the environment back), unless the variable is already set, which then decides. If something imported
Arrow earlier, later buffers at least come from the system allocator.
"""

from __future__ import annotations

import os
import sys

POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
_CHOSEN = POOL_VARIABLE in os.environ
_IMPORTED_BEFORE = "pyarrow" in sys.modules

if not _CHOSEN and not _IMPORTED_BEFORE:
    os.environ[POOL_VARIABLE] = "system"
try:
    import pyarrow as pa
    import pyarrow.parquet as pq
finally:
    if not _CHOSEN:
        os.environ.pop(POOL_VARIABLE, None)
if not _CHOSEN and _IMPORTED_BEFORE:
    pa.set_memory_pool(pa.system_memory_pool())

__all__ = ["pa", "pq"]

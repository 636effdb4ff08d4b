"""What ``make test-fast`` runs less of: the property tests' generated examples.

``make test`` (and CI) run every property test with its full number of examples; ``make test-fast``
(``LINE_OA_FAST_TESTS=1``) runs the same tests with a fifth of them, so that the loop a developer
runs after each edit still reaches every property, exactly-once included, in less time.
"""

from __future__ import annotations

import os

FAST = os.environ.get("LINE_OA_FAST_TESTS") == "1"
# Hypothesis' default for a property test that sets no number of its own (100) in the fast loop
FAST_DEFAULT_EXAMPLES = 20


def examples(full: int) -> int:
    """The number of examples a property test generates: ``full``; in the fast loop a fifth of it, at least
    10 (or ``full`` where that is fewer)."""
    return max(min(full, 10), full // 5) if FAST else full

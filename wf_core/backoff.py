"""The one exponential backoff of the durable schedules (stored as a next-attempt time).

The retry policy, callback delivery and the quota breaker each wait `base * 2**(n-1)`
seconds after their n-th try, capped; only the retry policy draws a jitter over that
ceiling (seeded by the run, so a restarted sensor draws the same delay).
"""

from __future__ import annotations

import random


def backoff_seconds(
    attempt: int, base: float, cap: float, jitter: random.Random | None = None
) -> float:
    """The wait after try `attempt` (1 is the first; below 1 counts as 1): `base`
    doubled per earlier try, at most `cap`; with `jitter`, a uniform draw below that."""
    doublings = max(0, attempt - 1)
    # 2**1024 is past any float: such a ceiling is the cap (and no OverflowError).
    ceiling = float(cap if doublings >= 1024 else min(cap, base * 2**doublings))
    return ceiling if jitter is None else jitter.uniform(0, ceiling)

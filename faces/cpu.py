"""How many CPU cores this process may use (its affinity mask, not the machine's count)."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores the scheduler lets this process run on (containers often allow fewer)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)

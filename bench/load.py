"""Waiting for a quiet machine: the ledger benchmarks share 2 CPUs with other people's work, which takes CPU
from whatever is measured."""

import os
import time


def wait_for_quiet(max_load: float, *, minutes: int = 10) -> None:
    """Wait (at most `minutes`) for the one-minute load average to fall under `max_load`."""
    for _ in range(minutes * 6):
        if os.getloadavg()[0] < max_load:
            return
        time.sleep(10)
    print(f"load average still {os.getloadavg()[0]:.2f} after {minutes} minutes; measuring anyway")

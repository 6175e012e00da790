"""Keep freed memory in the process for reuse instead of returning it to the OS every step.

glibc hands large freed blocks (activations, frame batches) back to the kernel at once, so the
next training step faults every page in again. On the project's 2-core VM that cost a fp32
training step at 448 px 12-15% of its time (benchmarks/RESULTS.md). Raising malloc's mmap and
trim thresholds keeps those blocks for the next step; resident memory then stays at its
steady-state peak instead of dipping between steps. PyTorch's CPU tuning guide preloads jemalloc
or tcmalloc for the same reason; this needs no preload. Without glibc (macOS, musl) it does
nothing.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
KEEP_UP_TO = 1 << 30  # blocks below 1 GiB come from the reusable heap
# Left alone, glibc raises its mmap threshold as large blocks are freed, up to this ceiling
# (64-bit): blocks above it are mapped and unmapped, page faults and all, every time.
DEFAULT_MMAP_THRESHOLD_MAX = 32 << 20

_keeping = False


def keeps_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` has set the thresholds in this process, so blocks of
    any size up to 1 GiB are reused (else only those under ``DEFAULT_MMAP_THRESHOLD_MAX``)."""
    return _keeping


def keep_freed_memory() -> bool:
    """Set glibc's thresholds for this process; True when they were set."""
    global _keeping
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, KEEP_UP_TO)) and bool(
        mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO)
    )
    if not done:
        log.info("glibc refused the malloc thresholds; freed memory goes back to the OS")
    _keeping = _keeping or done
    return done

"""glibc's malloc, asked to keep freed memory for reuse: done by the ``sseplug`` command only.

With its defaults, glibc gives the top of the heap back to the system as soon as 128 KiB or more
of it is free, then asks for it again: a stream of large events (each read, its text and its
events allocated, then freed) pays a page fault for nearly every 4 KiB it reads, which more
than doubled the CPU per byte in ``benchmarks/throughput.py --workload large``. Keeping
``TOP_PAD`` bytes at the top of the heap avoids that, for at most that much more memory held.
A library does not change its host process's allocator: programs using ``SSEClient`` get the
same with ``MALLOC_TOP_PAD_=16777216`` in their environment.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

__all__ = ["keep_freed_memory"]

TOP_PAD = 16 * 1024 * 1024
_M_TOP_PAD = -2  # glibc's malloc.h


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> bool:
    """Set glibc's ``M_TOP_PAD`` to ``TOP_PAD``; whether it was set. Nothing is done on another
    C library, or when the environment already tunes malloc (``MALLOC_*_``, ``GLIBC_TUNABLES``)."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    if not libc.startswith("glibc") or "GLIBC_TUNABLES" in environ or any(
        name.startswith("MALLOC_") and name.endswith("_") for name in environ
    ):
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_TOP_PAD, TOP_PAD))
    except (OSError, AttributeError):
        return False

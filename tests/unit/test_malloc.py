"""The ``sseplug`` command keeps freed memory for reuse (glibc): large events stop costing page faults."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sseplug._malloc import keep_freed_memory

CHURN = """
import resource, sys
from sseplug._malloc import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory({})

def churn():  # what a stream of large events does: a few MiB allocated in pieces, then all freed
    pieces = [b"x" * (64 * 1024) for _ in range(48)]
    del pieces

churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"), reason="glibc only")


def faults(mode: str) -> int:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@glibc
def test_freed_memory_is_kept_for_reuse_instead_of_faulted_in_again() -> None:
    default, kept = faults("default"), faults("keep")
    assert default > 5000, f"glibc's default gave {default} page faults for 50 rounds of 3 MiB"
    assert kept * 10 < default, f"{kept} page faults with the memory kept, {default} without"


@glibc
@pytest.mark.parametrize("name", ["MALLOC_TOP_PAD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"])
def test_a_malloc_setting_in_the_environment_is_left_alone(name: str) -> None:
    assert keep_freed_memory({name: "1"}) is False

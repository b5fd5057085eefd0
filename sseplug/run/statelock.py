"""One runner per state directory: an OS file lock on ``<state_dir>/runner.lock``.

Two runners on one config and one ``state_dir`` would both consume every stream and both write
its checkpoints. The lock is ``flock``'s, held by the open file: it dies with its process, so a
runner killed with SIGKILL never blocks its own restart (a pid file would).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from ..errors import ConfigError

__all__ = ["LOCK_NAME", "lock_state_dir"]

LOCK_NAME = "runner.lock"


def lock_state_dir(state_dir: Path, config_path: str | None = None) -> IO[str]:
    """Hold the state directory's lock (keep the returned file open while running); a
    ``ConfigError`` naming the directory and the pid that holds it when another process does."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        lock = open(state_dir / LOCK_NAME, "a+", encoding="ascii")
    except OSError as error:
        raise ConfigError(f"cannot create the state directory's lock in {state_dir}: {error}; "
                          "check that state_dir is a writable directory", key="runner.state_dir",
                          path=config_path) from error
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise ConfigError(
            f"the state directory {state_dir} is in use by another sseplug run (pid {holder}): two runners "
            "on one state_dir would both consume every stream; stop that runner, or give this one its own "
            "state_dir", key="runner.state_dir", path=config_path,
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock

"""Test-only hooks: the named points where a run crashes or pauses when a test asks for it through the
environment (``MARKOVFAULT_JOB_CRASH_AT``, ``MARKOVFAULT_JOB_PAUSE_AT``; see :mod:`markovfault.job`)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_CRASH_ENV = "MARKOVFAULT_JOB_CRASH_AT"
_PAUSE_ENV = "MARKOVFAULT_JOB_PAUSE_AT"


def checkpoint(point: str) -> None:
    """Crash or pause here when a test asks for it (see :mod:`markovfault.job`)."""
    if os.environ.get(_CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
    pause = os.environ.get(_PAUSE_ENV, "")
    if pause.partition(":")[0] == point:
        where = Path(pause.partition(":")[2])
        (where / f"paused.{os.getpid()}").touch()
        deadline = time.monotonic() + 60
        while not (where / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)

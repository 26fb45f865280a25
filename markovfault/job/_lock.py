"""The run's lock: an exclusive ``flock`` on ``<output>/.lock`` for the whole run, which the kernel frees when
the process ends, and which records its holder so that the next run can say it took over from a killed one."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from pathlib import Path

from ..exceptions import JobLockedError
from ._asof import utcnow_iso
from ._storage import writing

logger = logging.getLogger("markovfault.job")


class Lock:
    """An exclusive ``flock`` on ``path``, held for the whole run.

    The kernel releases it when the process ends, however it ends, so a lock
    left by a killed run is free; the holder's details written into the file
    tell the next run that it took over from a run that did not finish.
    """

    def __init__(self, path: Path, as_of: str):
        self.path, self.as_of, self.fd = path, as_of, None

    def __enter__(self) -> "Lock":
        with writing(self.path):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_fd(fd)
            os.close(fd)
            raise JobLockedError(
                f"another run holds the lock {self.path} ({holder or 'no details'}); this run "
                "exits without writing anything. Try again later."
            ) from None
        self.fd = fd
        previous = _read_fd(fd)
        if previous:
            logger.warning(
                "took over the lock from a run that did not finish (%s); its leftovers are "
                "cleaned up and its work is done again", previous,
                extra={"event": "stale_lock", "previous_holder": previous},
            )
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started_at": utcnow_iso(), "as_of": self.as_of})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        try:
            os.ftruncate(self.fd, 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


def _read_fd(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""

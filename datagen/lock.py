"""``<file>.lock``: one writer per dataset, with the writer's PID; stale locks are taken over."""

from __future__ import annotations

import os
import pathlib
import socket

from nopx.errors import UserError

__all__ = ["WriteLock"]


class WriteLock:
    """``<file>.lock``: at most one writer per dataset.

    The lock file holds the writer's PID and host. A second writer is refused while that
    process lives; a lock left by a dead process (a killed run) is stale and taken over.

    >>> import tempfile
    >>> lock = WriteLock(pathlib.Path(tempfile.mkdtemp()) / "d.h5")
    >>> lock.acquire(); lock.holder() == (os.getpid(), socket.gethostname())
    True
    >>> lock.release(); lock.holder() is None
    True
    """

    def __init__(self, dataset: str | os.PathLike) -> None:
        dataset = pathlib.Path(dataset)
        self.dataset = dataset
        self.path = dataset.with_name(dataset.name + ".lock")

    def holder(self) -> tuple[int, str] | None:
        """``(pid, host)`` written in the lock file, or None without a (readable) one."""
        try:
            pid, host = self.path.read_text().split()
            return int(pid), host
        except (OSError, ValueError):
            return None

    def _held_by_other(self) -> tuple[int, str] | None:
        """The holder if it is another process that may be alive (any process on another host)."""
        holder = self.holder()
        if holder is None or holder == (os.getpid(), socket.gethostname()):
            return None
        pid, host = holder
        if host != socket.gethostname():
            return holder
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # its writer is gone: stale
        except PermissionError:
            pass  # alive, another user's
        return holder

    def acquire(self) -> None:
        """Take the lock (atomically: a complete lock file is linked into place), or raise UserError."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mine = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        mine.write_text(f"{os.getpid()} {socket.gethostname()}\n")
        try:
            for _ in range(2):
                try:
                    os.link(mine, self.path)
                    return
                except FileExistsError:
                    holder = self._held_by_other()
                    if holder is not None:
                        raise UserError(
                            f"{self.dataset}: another process (PID {holder[0]} on {holder[1]}) is "
                            f"writing this dataset; wait for it to end, or if it is no longer running, "
                            f"delete {self.path} and retry") from None
                    self.path.unlink(missing_ok=True)  # stale: its writer is gone
            raise UserError(f"{self.dataset}: could not take the write lock {self.path} (another "
                            f"writer keeps taking it); run one `nopx datagen` per file")
        finally:
            mine.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock file if this process holds it."""
        if self.holder() == (os.getpid(), socket.gethostname()):
            self.path.unlink(missing_ok=True)

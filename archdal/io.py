"""Files that are either whole or absent, and folders with one writer: every run, sweep and
result file is written through here."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from archdal.errors import ConfigError

LOCK_FILE = ".archdal.lock"


def hash_file(path: Path, digest: Any) -> Any:
    """`digest` (a `hashlib` object) updated with the file's bytes, read in 1 MiB blocks."""
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest


@contextlib.contextmanager
def waiting_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path.lock`, waited for (held by one open file, so threads
    exclude too): the first of several processes computes what `path` holds, the rest
    queue and then find it."""
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FolderLock:
    """An exclusive lock on a run or experiment folder, held by one process at a time.

    It is an advisory `flock` on `folder/.archdal.lock`, which records the holder (pid and
    host). The kernel drops it when the holder dies, so a killed run never blocks the rerun
    that resumes it; the file itself stays (unlinking it would let two processes lock two
    different files).
    """

    def __init__(self, folder: Path, flag: str):
        self.folder = Path(folder)
        self.flag = flag
        self.fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def acquire(self) -> FolderLock:
        """Take the lock or fail at once with a ConfigError naming the folder and its holder;
        creates the folder if needed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"{self.flag} {self.folder} is in use by {holder}; wait for it to finish, or "
                "stop it and rerun (a stopped run resumes)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self, remove_folder: bool = False) -> None:
        """Let go; `remove_folder`: also remove the folder when the lock file is all it
        holds (a folder this lock created for work that was refused)."""
        if self.fd is None:
            return
        if remove_folder and [p.name for p in self.folder.iterdir()] == [LOCK_FILE]:
            self.path.unlink()
            self.folder.rmdir()
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

"""One process per session folder: an exclusive lock held for the whole session.

A session's exactly-once promise (every job key submitted once, the ledger equal to the
shots the backend played) rests on one writer of its journal and ledger. Two processes
started on one folder (``pulsecal-replay session_id=x`` twice, a sweep launched twice
under one ``sweep.name``) would each read the same journal, each submit every job and
overwrite each other's ledger. So a session (``run_session``) and a sweep qubit's job
(``run_qubit``: its status, grant, session and parameter-store record) hold an exclusive
lock on ``<folder>/session.lock`` from start to end, and a second process is refused at
once with :class:`SessionBusy`, naming the holder's PID.

The lock is ``fcntl.flock`` on the open file, so the kernel drops it when the holder's
process ends in any way, SIGKILL included: a lock file left behind by a killed process
holds no lock, and the next process takes it (and resumes the session from its journal).
The file records who holds it (PID, host, start time, command line) for the refusal
message only; the lock itself is the kernel's. ``flock`` is advisory and local to a host
(on NFS it is emulated with byte-range locks and needs a lock manager), like the sweep's
other locks.

A holder removes the lock file when it lets go, so a finished folder has none; every
acquirer checks, once it holds the lock, that the path still names the file it locked
(else the holder removed it in between, and it tries again), so removal never lets two
processes hold the lock together. The lock is re-entrant in the thread that holds it
(``run_qubit`` holds it around ``run_session``); another thread of the same process is
refused like another process.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import inspect
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

LOCK_NAME = "session.lock"
LOCK_FORMAT = "pulsecal.session-lock/1"
# The exit status of a console script refused because another process holds the session.
EXIT_SESSION_BUSY = 3


class SessionBusy(RuntimeError):
    """Another process (or thread) holds the session folder's lock.

    Attributes:
        folder: the session folder.
        holder: what the lock file says of the holder (``pid``, ``host``, ``started_at``,
            ``command``); empty if the holder had not written it yet.
    """

    def __init__(self, folder: Path, holder: dict[str, Any]) -> None:
        self.folder = folder
        self.holder = holder
        pid = holder.get("pid")
        who = f"PID {pid}" if pid is not None else "another process (PID not yet recorded)"
        where = [f"host {holder['host']}"] if holder.get("host") else []
        if holder.get("started_at"):
            where.append(f"since {holder['started_at']}")
        if holder.get("thread") is not None:
            where.append(f"thread {holder['thread']}")
        detail = f" ({', '.join(where)})" if where else ""
        super().__init__(f"session folder {folder} is busy: held by {who}{detail}; wait for it to end or "
                         f"stop that process (a killed holder frees the folder at once)")

    @property
    def pid(self) -> int | None:
        pid = self.holder.get("pid")
        return int(pid) if isinstance(pid, int) else None


@dataclass(frozen=True)
class _Held:
    fd: int
    thread: int


_registry_guard = threading.Lock()
_held: dict[Path, _Held] = {}


def _forget_in_child() -> None:
    # A forked child shares the parent's open lock files; it must not count them as its
    # own (it would run a session its parent holds), nor keep the parent's lock alive
    # after the parent dies, so it closes them.
    for h in _held.values():
        try:
            os.close(h.fd)
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def read_holder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``<folder>/session.lock`` says of its holder ({} if there is none or it is
    unreadable). It says nothing of whether the lock is held: a killed holder leaves it."""
    try:
        data = json.loads((Path(folder) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _holder_record() -> dict[str, Any]:
    return {"format": LOCK_FORMAT, "pid": os.getpid(), "host": socket.gethostname(),
            "started_at": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) if sys.argv else ""}


def _alive(holder: dict[str, Any]) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    if holder.get("host") != socket.gethostname():
        return True  # cannot tell from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _busy(folder: Path) -> SessionBusy:
    # The holder writes its record right after it takes the lock; until then the file is
    # empty or still names a killed earlier holder, so give it a moment.
    holder: dict[str, Any] = {}
    for _ in range(20):
        holder = read_holder(folder)
        if _alive(holder):
            break
        time.sleep(0.01)
    return SessionBusy(folder, holder)


def _acquire(folder: Path) -> int:
    path = folder / LOCK_NAME
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # the folder was removed in between: make it again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _busy(folder) from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder removed the file as it let go: lock the one at the path now
            os.close(fd)
            continue
        record = json.dumps(_holder_record(), sort_keys=True).encode() + b"\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        return fd


def _release(folder: Path, fd: int) -> None:
    # Removed while still locked: an acquirer that opened the old file finds on locking it
    # that the path no longer names it, and starts again.
    try:
        (folder / LOCK_NAME).unlink(missing_ok=True)
    finally:
        os.close(fd)


@contextmanager
def session_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the exclusive lock of session folder ``folder`` (created if missing) for the
    block; yields the lock file's path.

    Raises :class:`SessionBusy` at once, naming the holder's PID, if another process or
    another thread holds it; re-entrant in the holding thread. Folders it had to create
    are removed again when the block ends if they are still empty, so a session refused
    before it wrote anything leaves no folder behind.
    """
    folder = Path(folder)
    key = folder.resolve()
    me = threading.get_ident()
    with _registry_guard:
        held = _held.get(key)
        if held is not None and held.thread != me:
            raise SessionBusy(folder, {**read_holder(folder), "thread": held.thread})
    if held is not None:  # the outer holder in this thread lets go
        yield folder / LOCK_NAME
        return
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    with _registry_guard:
        fd = _acquire(folder)
        _held[key] = _Held(fd, me)
    try:
        yield folder / LOCK_NAME
    finally:
        with _registry_guard:
            _held.pop(key, None)
            _release(folder, fd)
        for p in created:  # innermost first; only empty ones: a refused session leaves nothing
            try:
                p.rmdir()
            except OSError:
                break


P = ParamSpec("P")
R = TypeVar("R")


def holds_session_lock(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` holding ``session_lock`` of its ``folder`` argument for the whole call."""
    signature = inspect.signature(fn)
    if "folder" not in signature.parameters:
        raise TypeError(f"holds_session_lock: {fn.__qualname__} has no 'folder' parameter")

    @functools.wraps(fn)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        folder = signature.bind(*args, **kwargs).arguments["folder"]
        with session_lock(folder):
            return fn(*args, **kwargs)

    return locked


__all__ = ["EXIT_SESSION_BUSY", "LOCK_NAME", "SessionBusy", "holds_session_lock", "read_holder", "session_lock"]

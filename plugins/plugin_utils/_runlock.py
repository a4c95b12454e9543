# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The report directory's lock: one run at a time writes a report directory.

Two runs into one report directory would replace each other's host records and reports (a host's
record is replaced by the other run's, and the report of one run names the other's results, or
fails). The lock makes the second run fail before it contacts any server, instead of noticing it
afterwards.

The lock is the file <report_dir>/.hybridmail.lock, created with O_CREAT | O_EXCL, holding
{"schema", "run_id", "pid", "pid_start", "host", "started_at", "state"}. Its owner is the
ansible-playbook process (the parent of the worker processes in which action plugins run), so that
every batch of a `serial` play, each of which runs the role's checks again, keeps the same lock:

- acquire() (the role's run-once check, before any server is contacted) creates it, or takes it
  back when it is this run's own (the next batch);
- the report of each batch sets "state" to "between-batches", and the report of the last batch
  (every host of the play has a result) removes it;
- a lock whose process is gone is "stale". When its state is "between-batches", that run ended after
  a complete report (a rollout stopped by max_fail_percentage, or a run of which later batches never
  started): nothing was in flight, and a new run takes it over. When its state is "running", that run
  died during a batch (killed, Ctrl-C, a crash): the lock is refused with how to clear it, because
  only a person can tell whether that run left servers half-done.
- A lock of another controller host cannot be checked; it is refused with how to clear it.

Deciding and writing happen under an flock(2) of <report_dir>/.hybridmail.lock.guard (a small file
left in place), so that two runs starting at the same moment cannot both take over a stale lock.
Only the standard library; no Ansible imports.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import uuid

from ._model import iso_utc

try:
    import fcntl
except ImportError:  # pragma: no cover - the controller is POSIX (Ansible does not run on Windows)
    fcntl = None

LOCK_NAME = ".hybridmail.lock"
GUARD_NAME = ".hybridmail.lock.guard"
SCHEMA = "hybridmail.exchange/report-lock"
RUNNING = "running"
BETWEEN_BATCHES = "between-batches"


class LockError(Exception):
    """The report directory is locked by another run (or its lock cannot be read); the message says what to do."""


def lock_path(directory: str) -> str:
    return os.path.join(os.path.abspath(os.path.expanduser(str(directory))), LOCK_NAME)


def run_pid() -> int:
    """The pid of the ansible-playbook process of this run: action plugins run in its worker processes."""
    return os.getppid()


def process_start(pid: int) -> str | None:
    """When process pid started, in clock ticks since boot (Linux /proc), so that a reused pid is not taken
    for the process that held the lock; None where /proc is not available."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as handle:
            # The command name (field 2) is in parentheses and may hold spaces: count from its end.
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def alive(pid: int, start: str | None) -> bool:
    """Process pid of this host still runs (and is the one that started at start, when known)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    now = process_start(pid)
    return start is None or now is None or now == start


def _now() -> str:
    return iso_utc(datetime.datetime.now(datetime.timezone.utc))


def _read(path: str) -> dict | None:
    """The lock document, None when there is no lock. Raises LockError when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return None  # no lock (nor, for NotADirectoryError, a directory: writing there fails with its own message)
    except OSError as exc:
        raise LockError("cannot read the lock %s: %s. If no run is writing into %s, delete it: rm %s"
                        % (path, exc.strerror or exc, os.path.dirname(path), path)) from None
    try:
        document = json.loads(data.decode("utf-8"))
    except ValueError:
        document = None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise LockError("%s is not a lock this collection wrote (%d bytes). If no run is writing into %s, delete it: rm %s"
                        % (path, len(data), os.path.dirname(path), path))
    return document


def _write_new(path: str, document: dict) -> None:
    """Create the lock; FileExistsError when there is one."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(handle, "wb") as output:
        output.write(json.dumps(document, sort_keys=True).encode("utf-8") + b"\n")


def _replace(path: str, document: dict) -> None:
    temporary = "%s.%s.tmp" % (path, uuid.uuid4().hex)
    try:
        _write_new(temporary, document)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _guard(directory: str):
    """Serialises the decisions of concurrent runs on this directory (a no-op without flock)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    handle = os.open(os.path.join(directory, GUARD_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the flock


def describe(document: dict) -> str:
    return "run %s (pid %s on %s, started %s)" % (document.get("run_id"), document.get("pid"), document.get("host"),
                                                  document.get("started_at"))


def _ours(document: dict, pid: int, host: str) -> bool:
    return document.get("pid") == pid and document.get("host") == host


def _refusal(path: str, document: dict, host: str) -> LockError:
    directory = os.path.dirname(path)
    holder = describe(document)
    if document.get("host") != host:
        return LockError(
            "the report directory %s is locked by %s, on another controller; this one cannot tell whether it still runs. "
            "Two runs into one report directory would overwrite each other's host records and reports: wait for it, or "
            "give this run its own hybrid_readiness_report_dir. If that run no longer exists, delete the lock: rm %s"
            % (directory, holder, path))
    if alive(document.get("pid"), document.get("pid_start")):
        return LockError(
            "the report directory %s is in use by %s, which is still running. Two runs into one report directory would "
            "overwrite each other's host records and reports: wait for it to finish, or give this run its own "
            "hybrid_readiness_report_dir." % (directory, holder))
    return LockError(
        "the report directory %s is locked by %s, which no longer runs: it stopped during a batch (killed, interrupted or "
        "crashed), so servers of that batch may be half-done and its reports incomplete. Run again once you know that no "
        "run is writing into %s, after deleting the stale lock: rm %s" % (directory, holder, directory, path))


def acquire(directory: str, pid: int | None = None, host: str | None = None) -> dict:
    """Take the report directory's lock for the run of pid (default: this run) on host (default: this host);
    returns the lock document. This run's own lock (an earlier batch) is taken back. Raises LockError, or
    OSError when the directory cannot be written."""
    pid = run_pid() if pid is None else pid
    host = socket.gethostname() if host is None else host
    path = lock_path(directory)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with _guard(os.path.dirname(path)):
        existing = _read(path)
        if existing is None:
            document = {"schema": SCHEMA, "run_id": uuid.uuid4().hex, "pid": pid, "pid_start": process_start(pid), "host": host,
                        "started_at": _now(), "state": RUNNING}
            try:
                _write_new(path, document)
            except FileExistsError:  # without flock: another run was faster
                raise _refusal(path, _read(path) or {}, host) from None
            return document
        if _ours(existing, pid, host):
            document = dict(existing, state=RUNNING)
        elif existing.get("host") == host and existing.get("state") == BETWEEN_BATCHES \
                and not alive(existing.get("pid"), existing.get("pid_start")):
            # That run ended after a complete report: nothing of it was in flight.
            document = {"schema": SCHEMA, "run_id": uuid.uuid4().hex, "pid": pid, "pid_start": process_start(pid), "host": host,
                        "started_at": _now(), "state": RUNNING, "took_over": describe(existing)}
        else:
            raise _refusal(path, existing, host)
        _replace(path, document)
        return document


def check(directory: str, pid: int | None = None, host: str | None = None) -> dict | None:
    """The lock when this run holds it, None when there is none (a module used outside the role). Raises
    LockError when another run holds it."""
    pid = run_pid() if pid is None else pid
    host = socket.gethostname() if host is None else host
    path = lock_path(directory)
    existing = _read(path)
    if existing is None or _ours(existing, pid, host):
        return existing
    raise _refusal(path, existing, host)


def release(directory: str, last: bool, pid: int | None = None, host: str | None = None) -> str | None:
    """At the end of a batch's report: remove this run's lock after the last batch, else mark it
    between-batches. Returns what was done ("removed", "kept"), None when this run holds no lock."""
    pid = run_pid() if pid is None else pid
    host = socket.gethostname() if host is None else host
    path = lock_path(directory)
    with _guard(os.path.dirname(path)):
        try:
            existing = _read(path)
        except LockError:
            return None
        if existing is None or not _ours(existing, pid, host):
            return None
        if last:
            try:
                os.unlink(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            return "removed"
        _replace(path, dict(existing, state=BETWEEN_BATCHES))
        return "kept"

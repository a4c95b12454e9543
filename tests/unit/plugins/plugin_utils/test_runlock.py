"""The report directory's lock (plugins/plugin_utils/_runlock.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _runlock

HOST = "controller01"


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def lock_of(directory) -> dict:
    return json.loads((directory / _runlock.LOCK_NAME).read_text(encoding="utf-8"))


def test_a_run_takes_the_lock_keeps_it_across_batches_and_removes_it_after_the_last(tmp_path):
    first = _runlock.acquire(str(tmp_path), pid=os.getpid(), host=HOST)
    assert first["state"] == "running" and first["pid"] == os.getpid() and lock_of(tmp_path) == first
    assert _runlock.check(str(tmp_path), pid=os.getpid(), host=HOST) == first
    assert _runlock.release(str(tmp_path), last=False, pid=os.getpid(), host=HOST) == "kept"
    assert lock_of(tmp_path)["state"] == "between-batches"
    again = _runlock.acquire(str(tmp_path), pid=os.getpid(), host=HOST)  # the next batch of the same run
    assert again["run_id"] == first["run_id"] and again["state"] == "running"
    assert _runlock.release(str(tmp_path), last=True, pid=os.getpid(), host=HOST) == "removed"
    assert not (tmp_path / _runlock.LOCK_NAME).exists()
    assert _runlock.check(str(tmp_path), pid=os.getpid(), host=HOST) is None  # no lock: a module used on its own


def test_a_live_run_of_this_host_keeps_its_lock(tmp_path):
    held = _runlock.acquire(str(tmp_path), pid=os.getpid(), host=HOST)
    message = (r"is in use by run %s \(pid %d on %s, started .*\), which is still running\. Two runs into one report "
               r"directory would overwrite" % (held["run_id"], os.getpid(), HOST))
    for attempt in (_runlock.acquire, _runlock.check):
        with pytest.raises(_runlock.LockError, match=message):
            attempt(str(tmp_path), pid=os.getpid() + 1, host=HOST)
    assert _runlock.release(str(tmp_path), last=True, pid=os.getpid() + 1, host=HOST) is None  # not the holder's: left alone
    assert lock_of(tmp_path) == held


@pytest.mark.parametrize("state", ["running", "between-batches"])
def test_a_dead_run_s_lock_is_stale_refused_when_it_died_in_a_batch_and_taken_over_when_it_ended_between_batches(tmp_path, state):
    pid = dead_pid()
    _runlock.acquire(str(tmp_path), pid=pid, host=HOST)
    if state == "between-batches":
        _runlock.release(str(tmp_path), last=False, pid=pid, host=HOST)
        taken = _runlock.acquire(str(tmp_path), pid=os.getpid(), host=HOST)
        assert taken["pid"] == os.getpid() and "pid %d" % pid in taken["took_over"]
        return
    message = r"which no longer runs: it stopped during a batch .* after deleting the stale lock: rm %s$" % (tmp_path / _runlock.LOCK_NAME)
    with pytest.raises(_runlock.LockError, match=message):
        _runlock.acquire(str(tmp_path), pid=os.getpid(), host=HOST)


def test_a_reused_pid_is_not_taken_for_the_run_that_held_the_lock(tmp_path):
    _runlock.acquire(str(tmp_path), pid=os.getpid(), host=HOST)
    document = dict(lock_of(tmp_path), pid_start="1")  # this pid, but a process that started at another time
    (tmp_path / _runlock.LOCK_NAME).write_text(json.dumps(document), encoding="utf-8")
    if _runlock.process_start(os.getpid()) is None:
        pytest.fail("/proc is expected on the controllers this collection is tested on")
    with pytest.raises(_runlock.LockError, match="which no longer runs"):
        _runlock.acquire(str(tmp_path), pid=os.getpid() + 1, host=HOST)


def test_a_lock_of_another_controller_or_an_unreadable_one_is_refused_with_how_to_clear_it(tmp_path):
    _runlock.acquire(str(tmp_path), pid=os.getpid(), host="other-controller")
    path = tmp_path / _runlock.LOCK_NAME
    with pytest.raises(_runlock.LockError, match=r"on another controller; this one cannot tell whether it still runs\. .* rm %s$" % path):
        _runlock.acquire(str(tmp_path), pid=os.getpid(), host=HOST)
    path.write_text("{garbage", encoding="utf-8")
    with pytest.raises(_runlock.LockError, match=r"is not a lock this collection wrote \(8 bytes\)\. If no run is writing into .*, delete it"):
        _runlock.acquire(str(tmp_path), pid=os.getpid(), host=HOST)


def test_runs_starting_at_the_same_moment_get_one_lock(tmp_path):
    winners, refusals = [], []

    def contend(pid):
        try:
            winners.append(_runlock.acquire(str(tmp_path), pid=pid, host=HOST)["pid"])
        except _runlock.LockError:
            refusals.append(pid)

    # Live pids that are not ours: this process's parent and its own pid, and threads racing on them.
    pids = [os.getpid(), os.getppid()] * 4
    threads = [threading.Thread(target=contend, args=(pid,)) for pid in pids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    holder = lock_of(tmp_path)["pid"]
    assert set(winners) == {holder} and all(pid != holder for pid in refusals) and len(winners) + len(refusals) == len(pids)

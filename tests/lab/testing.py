"""Helpers for tests and tools that run the lab: start it in a subprocess, run Ansible against it.

    with running_lab("tests/lab/fleets/kb2888788.yml", tmp_path=tmp_path) as lab:
        result = run_ansible(["exchange", "-m", "ansible.builtin.raw", "-a", "exit 0"], lab.inventory)
        assert lab.status()["servers"]["EX01"]["winrm"]["commands"]["raw-exit0"] == 1
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Iterator

from tests.lab.__main__ import DEFAULT_PASSWORD, DEFAULT_USER, call_control, state_dir_for

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS_PATH = os.path.join(REPO_ROOT, "build", "collections")
READY_PREFIX = "LAB READY "


class LabStartError(RuntimeError):
    """The lab process exited or stayed silent instead of reporting LAB READY."""


@dataclass
class RunningLab:
    """A lab process started by running_lab()."""

    process: subprocess.Popen
    inventory: str
    control_url: str
    state_dir: str
    log_path: str

    def status(self) -> dict:
        return call_control(self.inventory, "/status")

    def fault(self, server: str, kind: str, **options) -> dict:
        """Inject a fault (see tests/lab/control.py): seconds, times, after, cmdlet, message."""
        return call_control(self.inventory, "/fault", dict(options, server=server, kind=kind))

    def clear(self, server: str | None = None) -> dict:
        return call_control(self.inventory, "/clear", {"server": server} if server else {})

    def reset_counters(self) -> dict:
        return call_control(self.inventory, "/reset-counters", {})

    def log(self) -> str:
        """What the lab wrote to stdout and stderr so far (for assertion messages)."""
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()


@contextlib.contextmanager
def running_lab(
    fleet_path: str,
    *,
    tmp_path: str | os.PathLike | None = None,
    https: bool = False,
    auth: str = "basic",
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    latency: float = 0.0,
    startup_timeout: float = 60.0,
) -> Iterator[RunningLab]:
    """Run `python -m tests.lab serve` until the block ends; yields a RunningLab."""
    with contextlib.ExitStack() as stack:
        if tmp_path is None:
            tmp_path = stack.enter_context(tempfile.TemporaryDirectory(prefix="hybridmail-lab-"))
        inventory = os.path.join(os.fspath(tmp_path), "lab-inventory.yml")
        log_path = os.path.join(os.fspath(tmp_path), "lab.log")
        command = [
            sys.executable, "-m", "tests.lab", "serve",
            "--fleet", os.path.abspath(fleet_path),
            "--inventory", inventory,
            "--auth", auth,
            "--user", user,
            "--password", password,
            "--latency", str(latency),
        ]  # fmt: skip
        if https:
            command.append("--https")
        log = stack.enter_context(open(log_path, "wb"))
        # A file, not a pipe: nobody reads the lab's output while tests run, and a full pipe blocks.
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(_stop, process)
        control_url = _wait_until_ready(process, log_path, startup_timeout)
        yield RunningLab(process, inventory, control_url, state_dir_for(inventory), log_path)


def _wait_until_ready(process: subprocess.Popen, log_path: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(READY_PREFIX):
                    return line.split()[2]
        if process.poll() is not None:
            break
        time.sleep(0.05)
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        output = handle.read()
    raise LabStartError("the lab did not report LAB READY (exit code %s):\n%s" % (process.poll(), output))


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ansible_env(extra: dict | None = None) -> dict:
    """Environment for ansible commands against the lab: this collection, no colours, no prompts."""
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS_PATH,
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_LOCALHOST_WARNING": "False",
        }
    )
    env.update(extra or {})
    return env


def run_ansible(
    args: list[str],
    inventory: str,
    *,
    program: str = "ansible",
    env: dict | None = None,
    timeout: float = 300,
    cwd: str = REPO_ROOT,
) -> subprocess.CompletedProcess:
    """Run ansible (or ansible-playbook, ...) from this interpreter's environment; output as text."""
    executable = os.path.join(os.path.dirname(sys.executable), program)
    return subprocess.run(
        [executable, "-i", inventory, *args],
        cwd=cwd,
        env=ansible_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

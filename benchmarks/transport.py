"""Transport benchmark: controller CPU of one runner round trip, through the real winrm connection plugin.

    python benchmarks/transport.py                 # 200 round trips against a lab server
    python benchmarks/transport.py --rounds 500

It starts a lab (tests/lab/fleets/healthy.yml), opens ansible.builtin.winrm connections to one server
the way a task's worker does (one connection per round trip: shell, command, receive, delete), and
measures this process's CPU time for:
  raw      exec_command("exit 0")                          Ansible's own floor per host
  runner   _transport.run_request(audit request)           request check, script on stdin, decode
The difference is what the runner's transport costs per host on top of Ansible's floor (the lab's
own CPU is another process and not counted). Also prints the script size. Lines for people first;
the last line is one JSON object. It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tests.lab.testing import COLLECTIONS_PATH, running_lab  # noqa: E402

import yaml  # noqa: E402


def _connection(host_vars: dict, defaults: dict):
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import connection_loader

    connection = connection_loader.get("winrm", PlayContext(), None)
    variables = dict(defaults, **host_vars)
    variables["_extras"] = {key: value for key, value in variables.items() if key.startswith("ansible_winrm_")}
    connection.set_options(var_options=variables, direct={"remote_addr": host_vars["ansible_host"],
                                                          "remote_user": defaults["ansible_user"]})
    return connection


def measure(function, rounds: int) -> float:
    """Mean CPU seconds of this process per call."""
    started = time.process_time()
    for _round in range(rounds):
        function()
    return (time.process_time() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, COLLECTIONS_PATH)
    from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _runner, _snapshot, _transport

    with running_lab(os.path.join(REPO_ROOT, "tests", "lab", "fleets", "healthy.yml")) as lab:
        with open(lab.inventory, encoding="utf-8") as handle:
            inventory = yaml.safe_load(handle)["all"]["children"]["exchange"]
        host_vars = inventory["hosts"]["ex01"]
        defaults = inventory["vars"]
        request = _snapshot.request(_snapshot.audit_calls(), read_only=True)

        def raw():
            connection = _connection(host_vars, defaults)
            connection.exec_command("exit 0")
            connection.close()

        def runner():
            connection = _connection(host_vars, defaults)
            _transport.run_request(connection, request, "ex01")
            connection.close()

        raw(), runner()  # warm up: imports, first connection
        figures = {"rounds": args.rounds, "script_bytes": len(_runner.compose_script(request)),
                   "runner_ps1_lines": _runner.load_runner_text().count("\n")}
        figures["raw_cpu_ms"] = measure(raw, args.rounds) * 1000
        figures["runner_cpu_ms"] = measure(runner, args.rounds) * 1000
        figures["transport_cpu_ms"] = figures["runner_cpu_ms"] - figures["raw_cpu_ms"]
    print("runner.ps1 %(runner_ps1_lines)d lines, script %(script_bytes)d bytes, %(rounds)d rounds" % figures)
    print("raw exit 0   %(raw_cpu_ms)6.2f ms CPU per round trip" % figures)
    print("runner audit %(runner_cpu_ms)6.2f ms CPU per round trip" % figures)
    print("transport    %(transport_cpu_ms)6.2f ms CPU per host on top of raw" % figures)
    print(json.dumps(dict(figures, benchmark="hybridmail.exchange transport")))


if __name__ == "__main__":
    main()

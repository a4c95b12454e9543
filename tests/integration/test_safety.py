"""Safety rules around enforcement, through ansible-playbook, the real winrm plugin and the lab (issue 16).

- The audit playbook cannot change a server, whatever the variables say (extra vars beat play vars).
- A mutating round trip that fails or times out after it was sent is reported as failed (the host
  answered the audit; it is reachable) with its outcome unknown: `changed: true` plus
  `changed_unknown: true` and the steps that may have applied, in the task result, the host record
  and every report - never `changed: false`.
- Two runs into one report directory: the second is refused before any server is contacted; a
  report directory whose hosts/ cannot be written is refused before anything changes.
- Control characters and bidi overrides from server data are visible escapes in the messages, in
  summary.md and in junit.xml.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

from tests.integration.playbook_runs import PLAYBOOKS, TRUST_BUNDLE, derived_inventory, hybrid_fleet, run_playbook, run_role, write_fleet
from tests.lab.testing import running_lab


def commands(servers: dict) -> dict:
    return {name: server["winrm"]["requests"]["Command"] for name, server in servers.items()}


def mutations(servers: dict) -> dict:
    return {name: [m["cmdlet"] for m in server["mutations"]] for name, server in servers.items() if server["mutations"]}


# ---------------------------------------------------------------------------------------------
# The audit playbook never mutates
# ---------------------------------------------------------------------------------------------


def test_the_audit_playbook_refuses_enforce_from_extra_vars_before_contacting_a_server(tmp_path):
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet({"EX01": "unbound", "EX02": "incident"})),
                     tmp_path=tmp_path) as lab:
        lab.reset_counters()
        completed = run_playbook([PLAYBOOKS["audit"], "-e", TRUST_BUNDLE, "-e", "hybrid_readiness_report_dir=%s" % (tmp_path / "r"),
                                  "-e", "hybrid_readiness_mode=enforce"], lab.inventory)
        servers = lab.status()["servers"]
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output
    assert mutations(servers) == {} and commands(servers) == {"EX01": 0, "EX02": 0}, output
    assert "playbooks/hybrid_readiness.yml only audits, but hybrid_readiness_mode is 'enforce'" in output, output
    assert "run playbooks/remediate.yml" in output and "Nothing was contacted and nothing was changed." in output


def test_the_audit_playbook_stays_read_only_even_when_its_refusal_is_skipped(tmp_path):
    """Defence in depth: with the refusal skipped (--skip-tags always), the role's per-host task still runs
    in check mode (a task keyword, which no variable overrides): read-only requests, nothing changes."""
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet({"EX01": "unbound", "EX02": "incident"})),
                     tmp_path=tmp_path) as lab:
        lab.reset_counters()
        run = run_role(lab.inventory, "audit", tmp_path / "reports", "-e", "hybrid_readiness_mode=enforce", "--skip-tags", "always")
        servers = lab.status()["servers"]
    assert mutations(servers) == {}, run.output
    assert commands(servers) == {"EX01": 1, "EX02": 1}, run.output
    assert all(cmdlet.startswith("Get-") for server in servers.values() for cmdlet in server["cmdlet_calls"])
    assert not servers["EX01"]["mail_flow"]["delivered"]  # still broken: nothing was fixed
    assert run.rc == 2, run.output


# ---------------------------------------------------------------------------------------------
# A mutating round trip without a usable answer: failed, changed unknown, never "unreachable"
# ---------------------------------------------------------------------------------------------

TASK_TIMEOUT = 10
# Every fault hits the second round trip (after=1): the audit answered, the mutating batch was sent.
MUTATING_FAULTS = {
    "EX01": {"kind": "http500", "after": 1},
    "EX02": {"kind": "drop", "after": 1},
    "EX03": {"kind": "truncate", "after": 1},  # the batch runs on the server, its answer is cut
    "EX04": {"kind": "timeout", "seconds": 8, "after": 1},  # the Receive outlasts the client's read timeout
    "EX05": {"kind": "latency", "seconds": 60, "after": 1},  # the batch runs, the answer outlasts the task timeout
}
CAUSES = {
    "ex01": r"ex01: connection failed: WinRMTransportError: Bad HTTP response returned from server\. Code 500\. "
            r"The mutating round trip did not answer",
    "ex02": r"ex02: connection failed: ConnectionError: .*Remote end closed connection without response.*\. "
            r"The mutating round trip did not answer",
    "ex03": r"ex03: the result line is garbled or truncated \(\d+ chars\): .*\. The mutating round trip did not answer",
    "ex04": r"ex04: connection failed: .*Read timed out\. \(read timeout=4\)\. The mutating round trip did not answer",
    "ex05": r"ex05: the task timed out during the mutating round trip \(Timed out after %d second\(s\)\.\)" % TASK_TIMEOUT,
}
STEPS = (r"step 1 \(enable SMTP on [0-9A-F]{40} \(services: IIS, SMTP\)\); step 2 \(restore [0-9A-F]{40} as the internal "
         r"transport certificate \(services: IMAP, POP, IIS, SMTP\)\)")
UNKNOWN = r", so its outcome is unknown; these steps may have been applied: %s\. Run again: the next run plans from what " \
          r"the server now holds\." % STEPS


def test_a_mutating_round_trip_without_a_usable_answer_is_failed_with_changed_unknown(tmp_path):
    kinds = {name: "unbound" for name in MUTATING_FAULTS}
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet(kinds)), tmp_path=tmp_path) as lab:
        for name, fault in MUTATING_FAULTS.items():
            lab.fault(name, **fault)
        inventory = derived_inventory(lab.inventory, tmp_path / "inventory.yml", {
            "ex04": {"ansible_winrm_operation_timeout_sec": 2, "ansible_winrm_read_timeout_sec": 4}})
        lab.reset_counters()
        run = run_role(inventory, "enforce", tmp_path / "reports", "-f", "5",
                       "-e", json.dumps({"hybrid_readiness_serial": ["100%"], "hybrid_readiness_max_fail_percentage": 100}),
                       env={"ANSIBLE_TASK_TIMEOUT": str(TASK_TIMEOUT)})
        servers = lab.status()["servers"]

    problems = []
    # The lab: the truncated and the late answers came after the batch ran; both steps applied.
    applied = {name: [m["result"] for m in server["mutations"]] for name, server in servers.items()}
    if applied["EX03"] != ["ok", "ok"] or applied["EX05"] != ["ok", "ok"]:
        problems.append("lab mutations %s: EX03 and EX05 were meant to apply their batch" % applied)
    recap = run.recap()
    for host, cause in CAUSES.items():
        pattern = cause + UNKNOWN
        entry = run.host(host)
        # report.json: failed (it answered the audit: reachable), changed unknown, the steps named.
        if (entry["status"], entry["changed"], entry.get("changed_unknown")) != ("failed", None, True):
            problems.append("%s: report.json status %s changed %s changed_unknown %s, expected failed, null, true"
                            % (host, entry["status"], entry["changed"], entry.get("changed_unknown")))
        if not re.fullmatch(pattern, entry["error"] or "", flags=re.DOTALL):
            problems.append("%s: report.json error %r does not match %r" % (host, entry["error"], pattern))
        if len(entry.get("may_have_applied") or ()) != 2 or not re.fullmatch(STEPS, "; ".join(entry["may_have_applied"])):
            problems.append("%s: may_have_applied %s" % (host, entry.get("may_have_applied")))
        # The task result: failed, changed true (conservative), changed_unknown, the steps; never unreachable.
        fatal = run.fatal(host)
        if [(r["_kind"], r.get("changed"), r.get("changed_unknown"), len(r.get("may_have_applied") or ())) for r in fatal] \
                != [("FAILED", True, True, 2)]:
            problems.append("%s: task results %s" % (host, [(r["_kind"], r.get("changed"), r.get("changed_unknown")) for r in fatal]))
        if recap.get(host, {}).get("unreachable") != 0 or recap.get(host, {}).get("failed") != 1:
            problems.append("%s: recap %s" % (host, recap.get(host)))
        # junit.xml and summary.md say unknown.
        properties = {p.get("name"): p.get("value") for p in run.junit_suite(host).iter("property")}
        if properties.get("changed") != "unknown" or not re.fullmatch(STEPS, properties.get("may_have_applied") or ""):
            problems.append("%s: junit.xml properties %s" % (host, properties))
        if not re.search(r"^- \*\*%s\*\*: step 1 \\\(enable SMTP on " % host, run.summary, flags=re.MULTILINE):
            problems.append("%s: summary.md does not list the steps that may have applied" % host)
    totals = run.report["totals"]
    if (totals["failed"], totals["unreachable"], totals["changed"], totals.get("changed_unknown")) != (5, 0, 0, 5):
        problems.append("report.json totals %s" % totals)
    if "| 5 | 0 | 5 | 0 | 0 | 5 | 5 |" not in run.summary:
        problems.append("summary.md totals: %s" % run.summary.split("## Servers")[0])
    assert not problems, "\n".join(problems) + "\n\n" + run.output

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
from tests.lab.testing import ansible_env, running_lab


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
    assert "run playbooks/remediate.yml" in output and "No server was contacted and nothing was changed." in output
    # Refused on the controller, as a wrong option is: Ansible's exit code 1, not a failed host's 2.
    assert completed.returncode == 1, output


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


# ---------------------------------------------------------------------------------------------
# One run at a time per report directory; the host records' directory checked up front
# ---------------------------------------------------------------------------------------------

LOCK = ".hybridmail.lock"


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_lock(report_dir, pid: int, state: str = "running", host: str | None = None) -> dict:
    report_dir.mkdir(parents=True, exist_ok=True)
    document = {"schema": "hybridmail.exchange/report-lock", "run_id": "0123456789abcdef0123456789abcdef", "pid": pid,
                "pid_start": None, "host": host or socket.gethostname(), "started_at": "2026-12-01T08:00:00Z", "state": state}
    (report_dir / LOCK).write_text(json.dumps(document), encoding="utf-8")
    return document


def small_lab(tmp_path, kinds=None):
    return running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet(kinds or {"EX01": "unbound", "EX02": "healthy"})),
                       tmp_path=tmp_path)


def playbook(lab, mode: str, report_dir, *extra: str, env=None) -> subprocess.CompletedProcess:
    return run_playbook([PLAYBOOKS[mode], "-e", TRUST_BUNDLE, "-e", "hybrid_readiness_report_dir=%s" % report_dir, *extra],
                        lab.inventory, env=env)


def test_a_run_into_a_report_directory_another_live_run_holds_is_refused_before_any_server_is_contacted(tmp_path):
    report_dir = tmp_path / "reports"
    lock = write_lock(report_dir, os.getpid())  # this test's process: alive, on this host
    with small_lab(tmp_path) as lab:
        lab.reset_counters()
        results = {mode: playbook(lab, mode, report_dir) for mode in ("audit", "enforce")}
        servers = lab.status()["servers"]
    for mode, completed in results.items():
        output = completed.stdout + completed.stderr
        assert completed.returncode != 0, output
        assert ("the report directory %s is in use by run %s (pid %d on %s, started 2026-12-01T08:00:00Z), which is still "
                "running." % (report_dir, lock["run_id"], os.getpid(), lock["host"])) in output, output
        assert "No server was contacted." in output
    assert commands(servers) == {"EX01": 0, "EX02": 0} and mutations(servers) == {}
    assert json.loads((report_dir / LOCK).read_text(encoding="utf-8")) == lock  # the other run's lock is left alone
    assert not (report_dir / "report.json").exists()


def test_a_stale_lock_is_refused_with_how_to_clear_it_and_a_clean_run_removes_its_own(tmp_path):
    report_dir = tmp_path / "reports"
    lock = write_lock(report_dir, dead_pid())
    with small_lab(tmp_path) as lab:
        lab.reset_counters()
        refused = playbook(lab, "enforce", report_dir)
        after_refusal = lab.status()["servers"]
        (report_dir / LOCK).unlink()  # what the message says to do
        lab.reset_counters()
        run = run_role(lab.inventory, "enforce", report_dir)
        servers = lab.status()["servers"]
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert ("which no longer runs: it stopped during a batch (killed, interrupted or crashed), so servers of that batch may be "
            "half-done and its reports incomplete. Run again once you know that no run is writing into %s, after deleting the "
            "stale lock: rm %s" % (report_dir, report_dir / LOCK)) in output, output
    assert "run %s (pid %d on %s" % (lock["run_id"], lock["pid"], lock["host"]) in output
    assert commands(after_refusal) == {"EX01": 0, "EX02": 0}
    # Once cleared: the run (three batches: 1, 25 %, the rest - the lock is kept across them) fixes EX01 and removes its lock.
    assert run.rc == 0, run.output
    assert mutations(servers) == {"EX01": ["Enable-ExchangeCertificate", "Enable-ExchangeCertificate"]}
    assert not (report_dir / LOCK).exists()


def test_a_stopped_rollout_leaves_a_lock_the_next_run_takes_over(tmp_path):
    """The canary fails, so the rollout stops after its report: that run ended cleanly between batches, and
    the next run into the same directory takes its lock over (and removes it when done)."""
    report_dir = tmp_path / "reports"
    with small_lab(tmp_path, {"EX01": "unbound", "EX02": "unbound", "EX03": "healthy"}) as lab:
        lab.fault("EX01", "cmdlet", cmdlet="Enable-ExchangeCertificate", times=1)
        stopped = run_role(lab.inventory, "enforce", report_dir)
        lock = json.loads((report_dir / LOCK).read_text(encoding="utf-8"))
        rerun = run_role(lab.inventory, "enforce", report_dir)
    assert stopped.rc == 2 and stopped.host("ex02")["error"] == "no result from this host in this run", stopped.output
    assert lock["state"] == "between-batches", lock
    assert rerun.rc == 0, rerun.output
    assert all(entry["status"] == "ok" and entry["compliant"] for entry in rerun.report["hosts"])
    assert not (report_dir / LOCK).exists()


def test_two_concurrent_runs_into_one_report_directory_the_second_is_refused_up_front(tmp_path):
    report_dir = tmp_path / "reports"
    with small_lab(tmp_path) as lab:
        lab.fault("EX01", "latency", seconds=6, times=1)  # keeps the first run in its audit for a while
        lab.fault("EX02", "latency", seconds=6, times=1)
        lab.reset_counters()
        first = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", lab.inventory, PLAYBOOKS["audit"], "-e",
             TRUST_BUNDLE, "-e", "hybrid_readiness_report_dir=%s" % report_dir],
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
            env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while not (report_dir / LOCK).exists() and time.monotonic() < deadline and first.poll() is None:
                time.sleep(0.05)
            holder = json.loads((report_dir / LOCK).read_text(encoding="utf-8"))
            second = playbook(lab, "enforce", report_dir)
            during = commands(lab.status()["servers"])
        finally:
            first_output = first.communicate(timeout=120)[0]
        servers = lab.status()["servers"]
    output = second.stdout + second.stderr
    assert second.returncode != 0, output
    assert "is in use by run %s (pid %d on %s" % (holder["run_id"], holder["pid"], holder["host"]) in output, output
    assert holder["pid"] == first.pid  # the lock names the ansible-playbook process of the first run
    # The second run contacted nothing: every command the lab saw is the first run's one audit per server.
    assert during == {"EX01": 1, "EX02": 1} and commands(servers) == {"EX01": 1, "EX02": 1} and mutations(servers) == {}
    assert first.returncode == 2, first_output  # EX01 is not compliant; its report is whole
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    assert report["mode"] == "audit" and [h["status"] for h in report["hosts"]] == ["ok", "ok"]
    assert not (report_dir / LOCK).exists()


def test_a_host_records_directory_that_cannot_be_written_is_refused_before_any_change(tmp_path):
    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    (report_dir / "hosts").write_text("a file where the host records should go\n", encoding="utf-8")
    with small_lab(tmp_path) as lab:
        lab.reset_counters()
        completed = playbook(lab, "enforce", report_dir)
        servers = lab.status()["servers"]
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output
    assert "cannot write the hybrid readiness reports: [Errno 17] File exists: '%s'. No server was contacted." % (
        report_dir / "hosts") in output, output
    assert commands(servers) == {"EX01": 0, "EX02": 0} and mutations(servers) == {}
    assert not (report_dir / LOCK).exists()


# ---------------------------------------------------------------------------------------------
# Control characters and bidi overrides from the server: visible escapes at every output boundary
# ---------------------------------------------------------------------------------------------

# Raw, none of these may reach the console, summary.md or junit.xml (report.json: only as JSON \u escapes).
RAW = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
FRIENDLY_NAME = "Contoso \u202eexe.txt\u202c \x1b[2J\x1b[31mred\x1b[0m \x85 \x9b end"
SUBJECT = "CN=mail.contoso.com, OU=\u2066hostile\u2069 \u202dunit, O=Contoso Ltd, C=US"
CONNECTOR = "Outbound to Office 365 \u202e(evil)\u202c"


def bidi_fleet() -> dict:
    """A server whose untrusted SMTP certificate (friendly name, subject) and cloud send connector carry
    terminal escapes, C1 controls and bidi overrides; each is named by a finding (HM103, HM201)."""
    data = hybrid_fleet({"EX01": {"certificates": [
        {"id": "public", "services": "IIS, SMTP"},
        {"subject": SUBJECT, "issuer": "enterprise_ca", "sans": ["mail.contoso.com"], "not_before": "-200d",
         "not_after": "+300d", "friendly_name": FRIENDLY_NAME, "services": "SMTP"}]}})
    data["organization"]["send_connectors"][0]["name"] = CONNECTOR
    return data


def test_control_characters_and_bidi_overrides_from_the_server_are_visible_escapes(tmp_path):
    with running_lab(write_fleet(tmp_path / "fleet.yml", bidi_fleet()), tmp_path=tmp_path) as lab:
        run = run_role(lab.inventory, "audit", tmp_path / "reports")
        servers = lab.status()["servers"]
    entry = run.host("ex01")
    assert entry["status"] == "ok", entry["error"]
    # report.json: the exact data (the file itself holds the characters as JSON \u escapes).
    assert FRIENDLY_NAME in {c["friendly_name"] for c in entry["facts"]["certificates"]}
    assert any(CONNECTOR in f["title"] for f in entry["findings"]), [f["title"] for f in entry["findings"]]
    report_text = (run.report_dir / "report.json").read_text(encoding="utf-8")
    assert "\\u202e" in report_text and not RAW.search(report_text)
    # The console, summary.md and junit.xml: no raw control or bidi character, the escapes visible instead.
    for name, text in (("console", run.output), ("summary.md", run.summary),
                       ("junit.xml", (run.report_dir / "junit.xml").read_text(encoding="utf-8"))):
        found = RAW.search(text)
        assert found is None, "%s carries U+%04X raw: ...%r..." % (name, ord(found.group()), text[max(0, found.start() - 60):found.end() + 20])
    fatal = run.fatal("ex01")
    assert len(fatal) == 1 and "\\u202e(evil)\\u202c" in fatal[0]["msg"], fatal
    assert "exe.txt\\\\u202c \\\\x1b\\[2J" in run.summary and "Outbound to Office 365 \\\\u202e\\(evil\\)\\\\u202c" in run.summary, run.summary
    hm201 = next(case for case in run.junit_suite("ex01").iter("testcase") if case.get("name", "").startswith("HM201 "))
    # HM201 is a warning: under fail_on critical it passes, its details in <system-out> (issue 14.4).
    assert "Outbound to Office 365 \\u202e(evil)\\u202c" in hm201.find("system-out").text

"""The role under every fault a WinRM fleet throws, through ansible-playbook, the real winrm plugin and the lab.

One fleet (playbook_runs.hybrid_fleet) of 15 servers, one fault per server from EX05 on, runs the
audit playbook and the remediation playbook (each in its own lab). For every fault:

- the failing host is reported with a precise message: in the play output (its `fatal:` result), in
  report.json (status and error), in junit.xml (an <error> in its testsuite) and in summary.md;
- the other hosts finish, with the results they have without any fault;
- no host loses a trusted SMTP certificate for mail.contoso.com, mail that flowed still flows, the
  internal transport and Auth certificates are intact on every server;
- after the lab's faults are cleared, a re-run converges (and a third run changes nothing).

In enforce, the transport faults hit the *mutating* round trip (`after=1`): the hardest place, where
a step may have run without the controller hearing about it. remediate.yml rolls out in batches
(1, 25 %, the rest): EX01 is the canary, EX02-EX04 the second batch, the faults are in the last one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pytest

from tests.integration.core_versions import task_timeout_re
from tests.integration.playbook_runs import (
    SEND_CONNECTOR,
    dead_port,
    derived_inventory,
    hybrid_fleet,
    run_role,
    write_fleet,
)
from tests.lab.testing import REPO_ROOT, running_lab

UNREACHABLE, FAILED, OK = "unreachable", "failed", "ok"
TASK_TIMEOUT = 10  # ANSIBLE_TASK_TIMEOUT of the faulted runs: what the slow host outlasts
OPERATION_TIMEOUT, READ_TIMEOUT = 2, 4  # the winrm client of the host whose Receive outlasts it
FORKS = "20"  # every host of a batch at once: the faulted run lasts as long as its slowest host
# What the enforcement modules add when the mutating round trip of an unbound server got no usable answer.
# The host answered the audit, so it is failed (not unreachable), with changed unknown (issue 16).
NOT_ANSWERED = (r"\. The mutating round trip did not answer, so its outcome is unknown; these steps may have been applied: "
                r"step 1 \(enable SMTP on [0-9A-F]{40} \(services: IIS, SMTP\)\); step 2 \(restore [0-9A-F]{40} as the internal "
                r"transport certificate \(services: IMAP, POP, IIS, SMTP\)\)\. Run again: the next run plans from what the server "
                r"now holds\.")
AD_TRANSIENT = ("Microsoft.Exchange.Data.Directory.ADTransientException: .*The LDAP server is unavailable. "
                r"\(injected by the lab\)")

KINDS = {
    "EX01": "unbound", "EX02": "healthy", "EX03": "unbound", "EX04": "healthy",
    "EX05": "unbound", "EX06": "unbound", "EX07": "unbound", "EX08": "unbound", "EX09": "unbound",
    "EX10": "unbound", "EX11": "unbound", "EX12": "incident", "EX13": "unbound", "EX14": "healthy",
    "EX15": "unbound",
}


@dataclass(frozen=True)
class Fault:
    """One fault on one server; the lab fault of each mode (None: none; "refused": a dead port)."""

    host: str
    audit: dict | str | None
    enforce: dict | str | None
    audit_status: str
    enforce_status: str
    message: str  # a regex the whole error message must match; {suffix}: NOT_ANSWERED in enforce when
    #               not_answered, else ""
    enforce_mutations: tuple = ()  # the lab's mutation results on this server after the faulted enforce run
    not_answered: bool = False  # enforce: the fault hits the mutating round trip and the message says so
    enforce_message: str | None = None  # enforce: this message instead of message


FAULTS = [
    Fault("ex05", {"kind": "http401"}, {"kind": "http401"}, UNREACHABLE, UNREACHABLE,
          r"ex05: connection failed: basic: the specified credentials were rejected by the server"),
    Fault("ex06", {"kind": "http500"}, {"kind": "http500", "after": 1}, UNREACHABLE, FAILED,
          r"ex06: connection failed: WinRMTransportError: Bad HTTP response returned from server\. Code 500{suffix}",
          not_answered=True),
    # The server holds the Receive longer than the client's read timeout (an operation timeout that outlasts it).
    Fault("ex07", {"kind": "timeout", "seconds": 8}, {"kind": "timeout", "seconds": 8, "after": 1}, UNREACHABLE, FAILED,
          r"ex07: connection failed: .*Read timed out\. \(read timeout=%d\){suffix}" % READ_TIMEOUT,
          not_answered=True),
    Fault("ex08", {"kind": "drop"}, {"kind": "drop", "after": 1}, UNREACHABLE, FAILED,
          r"ex08: connection failed: ConnectionError: .*Remote end closed connection without response.*{suffix}",
          not_answered=True),
    Fault("ex09", {"kind": "truncate"}, {"kind": "truncate", "after": 1}, FAILED, FAILED,
          r"ex09: the result line is garbled or truncated \(\d+ chars\): not base64 of UTF-8 JSON: .*; rc=0{suffix}",
          ("ok", "ok"), not_answered=True),
    Fault("ex10", {"kind": "garble"}, {"kind": "garble", "after": 1}, FAILED, FAILED,
          r"ex10: the result line is garbled or truncated \(\d+ chars\): not base64 of UTF-8 JSON: .*; rc=0{suffix}",
          ("ok", "ok"), not_answered=True),
    Fault("ex11", {"kind": "cmdlet", "cmdlet": "Get-ExchangeCertificate"},
          {"kind": "cmdlet", "cmdlet": "Get-ExchangeCertificate"}, FAILED, FAILED,
          r"ex11: Get-ExchangeCertificate \(certificates\) failed: %s \[EE9669E0,"
          r"Microsoft\.Exchange\.Management\.SystemConfigurationTasks\.GetExchangeCertificate\]" % AD_TRANSIENT),
    # Enforce: the incident server drops SMTP from its internal-CA certificate, then fails to pin the connector.
    Fault("ex12", None, {"kind": "cmdlet", "cmdlet": "Set-SendConnector"}, OK, FAILED,
          r"ex12: step 2 of 2 \(set TlsCertificateName of send connector '%s' to <I>CN=Hybridmail Lab Public TLS CA 2025, "
          r"O=Hybridmail Lab Trust Services, C=US<S>CN=mail\.contoso\.com, O=Contoso Ltd, C=US "
          r"\(organisation-wide: also changes the certificate EX01, [^)]* present to Exchange Online\)\) failed: %s \[EE9669E0,"
          r"Microsoft\.Exchange\.Management\.SystemConfigurationTasks\.SetSendConnector\]\. Applied: step 1 \(drop SMTP from "
          r"[0-9A-F]{{40}} \(services: IMAP, POP\)\)\. Not run: nothing\. The result shows the state as re-read; run again "
          r"to finish\." % (SEND_CONNECTOR, AD_TRANSIENT),
          ("ok", "error")),
    # A host slower than the task timeout; in enforce its mutating command runs, the answer comes too late.
    Fault("ex13", {"kind": "latency", "seconds": 60}, {"kind": "latency", "seconds": 60, "after": 1}, FAILED, FAILED,
          task_timeout_re("hybridmail.exchange.readiness_check", TASK_TIMEOUT), ("ok", "ok"),
          enforce_message=r"ex13: the task timed out during the mutating round trip \(Timed out after %d second\(s\)\.\)%s"
                          % (TASK_TIMEOUT, NOT_ANSWERED[len(r"\. The mutating round trip did not answer"):])),
    # Audit: an optional read fails; the host is audited and HM901 says what is missing.
    Fault("ex14", {"kind": "cmdlet", "cmdlet": "Get-Queue"}, None, OK, OK, ""),
    # Nothing listens on the host's port (its WinRM listener is down).
    Fault("ex15", "refused", "refused", UNREACHABLE, UNREACHABLE, r"ex15: connection failed: .*(Connection refused|Errno 111).*"),
]
BY_HOST = {fault.host: fault for fault in FAULTS}


def expected_message(fault: Fault, mode: str) -> str:
    if mode == "enforce" and fault.enforce_message:
        return fault.enforce_message
    return fault.message.format(suffix=NOT_ANSWERED if mode == "enforce" and fault.not_answered else "")


def failing(mode: str) -> list[Fault]:
    return [fault for fault in FAULTS if (fault.audit_status if mode == "audit" else fault.enforce_status) != OK]


# ---------------------------------------------------------------------------------------------
# Lab state
# ---------------------------------------------------------------------------------------------


def trusted_smtp(server: dict) -> bool:
    """The server holds the public certificate enabled for SMTP (the only one Exchange Online trusts here)."""
    return any(c["source"] == "public" and "SMTP" in c["services"] for c in server["certificates"])


def protected(server: dict) -> dict:
    """The internal transport and Auth certificates as the lab holds them."""
    certificates = {c["thumbprint"]: c for c in server["certificates"]}
    return {"internal_transport": server["internal_transport_certificate"],
            "internal_transport_services": certificates[server["internal_transport_certificate"]]["services"],
            "internal_mail_flow": server["internal_mail_flow"]["ok"],
            "auth": sorted((c["thumbprint"], c["services"]) for c in server["certificates"] if c["source"] == "exchange_auth")}


def safety_problems(before: dict, after: dict) -> list[str]:
    """What a run must never do to any server, as a list of problems."""
    problems = []
    for name, server in after.items():
        if trusted_smtp(before[name]) and not trusted_smtp(server):
            problems.append("%s lost its trusted SMTP certificate for mail.contoso.com" % name)
        if before[name]["mail_flow"]["delivered"] and not server["mail_flow"]["delivered"]:
            problems.append("%s: mail to Exchange Online flowed before and does not now: %s" % (name, server["mail_flow"]["last_error"]))
        if protected(server) != protected(before[name]):
            problems.append("%s: internal transport or Auth certificate changed: %s -> %s" % (name, protected(before[name]), protected(server)))
    return problems


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------


def reported_problems(run, fault: Fault, mode: str) -> list[str]:
    """The host's failure must be in the play output, report.json, junit.xml and summary.md, precisely."""
    host, pattern = fault.host, expected_message(fault, mode)
    status = fault.audit_status if mode == "audit" else fault.enforce_status
    problems = []
    entry = run.host(host)
    if entry["status"] != status or entry["compliant"] is not False:
        problems.append("%s: report.json status %s compliant %s, expected %s and not compliant"
                        % (host, entry["status"], entry["compliant"], status))
    error = entry["error"] or ""
    if not re.fullmatch(pattern, error, flags=re.DOTALL):
        problems.append("%s: report.json error %r does not match %r" % (host, error, pattern))
    fatal_messages = [result.get("msg") for result in run.fatal(host)]
    if error not in fatal_messages:
        problems.append("%s: the play output has no fatal result with the reported error; it has %r" % (host, fatal_messages))
    junit_error = run.junit_error(host)
    if junit_error is None or junit_error.get("type") != status or junit_error.get("message") != error \
            or junit_error.text != (error if error.startswith(host + ": ") else "%s: %s" % (host, error)):  # the host named once
        problems.append("%s: junit.xml has no matching <error>: %r" % (host, None if junit_error is None else junit_error.attrib))
    if run.summary_error(host) != error:
        problems.append("%s: summary.md lists %r, not the error" % (host, run.summary_error(host)))
    label = {UNREACHABLE: "UNREACHABLE", FAILED: "FAILED"}[status]
    if not re.search(r"^\| %s \| %s \| \*\*no\*\* \|" % (host, label), run.summary, flags=re.MULTILINE):
        problems.append("%s: summary.md has no '| %s | %s | **no** |' row" % (host, host, label))
    return problems


def findings_by_host(run) -> dict:
    """{host: (status, compliant, sorted finding ids)}."""
    return {entry["host"]: (entry["status"], entry["compliant"], sorted({f["id"] for f in entry["findings"]}))
            for entry in run.report["hosts"]}


# ---------------------------------------------------------------------------------------------
# The runs
# ---------------------------------------------------------------------------------------------


def start_fleet(tmp_path):
    return running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet(KINDS)), tmp_path=tmp_path)


def faulted_run(lab, tmp_path, mode: str, name: str):
    """Inject every fault of mode, run the role once with short timeouts; the lab faults stay until clear()."""
    for fault in FAULTS:
        lab_fault = getattr(fault, mode)
        if isinstance(lab_fault, dict):
            lab.fault(fault.host.upper(), **lab_fault)
    inventory = derived_inventory(lab.inventory, tmp_path / ("%s-inventory.yml" % name), {
        "ex07": {"ansible_winrm_operation_timeout_sec": OPERATION_TIMEOUT, "ansible_winrm_read_timeout_sec": READ_TIMEOUT},
        "ex15": {"ansible_port": dead_port()},
    })
    lab.reset_counters()
    return run_role(inventory, mode, tmp_path / name, "-f", FORKS, env={"ANSIBLE_TASK_TIMEOUT": str(TASK_TIMEOUT)})


def test_audit_under_every_fault(tmp_path):
    problems = []
    with start_fleet(tmp_path) as lab:
        before = lab.status()["servers"]
        baseline = run_role(lab.inventory, "audit", tmp_path / "baseline", "-f", FORKS)
        faulted = faulted_run(lab, tmp_path, "audit", "faulted")
        after_faults = lab.status()["servers"]
        commands = {name: server["winrm"]["requests"]["Command"] for name, server in after_faults.items()}
        lab.clear()
        rerun = run_role(lab.inventory, "audit", tmp_path / "rerun", "-f", FORKS)
        after = lab.status()["servers"]

    # Without faults: the unbound and incident servers are not compliant (exit code 2), the others are.
    assert baseline.rc == 2, baseline.output
    expected = findings_by_host(baseline)
    assert {host for host, (status, compliant, _ids) in expected.items() if status == OK and compliant} == {"ex02", "ex04", "ex14"}
    assert len(expected) == len(KINDS)

    # Each failing host, precisely, everywhere.
    assert faulted.rc == 2, faulted.output
    for fault in failing("audit"):
        problems += reported_problems(faulted, fault, "audit")
    # The other hosts finish, with the same results as without faults (ex14 adds HM901, below).
    for host, result in findings_by_host(faulted).items():
        if BY_HOST.get(host) in failing("audit") or host == "ex14":
            continue
        if result != expected[host]:
            problems.append("%s: with faults elsewhere %s, without %s" % (host, result, expected[host]))
    # A failing optional read: audited, compliant (HM901 is a warning), the missing read named in every report.
    ex14 = faulted.host("ex14")
    hm901 = [f for f in ex14["findings"] if f["id"] == "HM901"]
    if not (ex14["status"] == OK and ex14["compliant"] and len(hm901) == 1
            and any(re.fullmatch(r"Get-Queue \(queues\) failed: %s.*" % AD_TRANSIENT, w) for w in hm901[0]["evidence"]["warnings"])):
        problems.append("ex14: expected audited, compliant, HM901 naming Get-Queue; got %s %s %s" % (ex14["status"], ex14["compliant"], hm901))
    ex14_case = [c for c in faulted.junit_suite("ex14").iter("testcase") if c.get("name", "").startswith("HM901 ")]
    # A warning under fail_on critical passes in junit.xml (issue 14.4), with the finding in <system-out>.
    if not (ex14_case and ex14_case[0].find("failure") is None and "Get-Queue (queues) failed" in ex14_case[0].find("system-out").text):
        problems.append("ex14: junit.xml has no passing HM901 testcase naming Get-Queue in system-out")
    if not re.search(r"^\| ex14 \| audited \| yes \|.*HM901", faulted.summary, flags=re.MULTILINE):
        problems.append("ex14: summary.md does not show HM901")
    # Totals: 5 unreachable (401, 500, read timeout, drop, refused), 4 failed (truncated, garbled, cmdlet, slow).
    totals = faulted.report["totals"]
    if (totals["unreachable"], totals["failed"], totals["ok"]) != (5, 4, 6):
        problems.append("report.json totals %s, expected 5 unreachable, 4 failed, 6 ok" % totals)
    not_evaluated = [p.get("value") for p in faulted.junit.iter("property") if p.get("name") == "hosts_not_evaluated"]
    if not_evaluated != ["ex05, ex06, ex07, ex08, ex09, ex10, ex11, ex13, ex15"]:
        problems.append("junit.xml fleet suite: hosts_not_evaluated %s" % not_evaluated)

    # Read-only: nothing changed anywhere, and every server that answered got exactly one command.
    problems += safety_problems(before, after_faults)
    problems += ["%s was changed by an audit: %s" % (name, server["mutations"]) for name, server in after.items() if server["mutations"]]
    expected_commands = {name: 0 if name in ("EX05", "EX15") else 1 for name in KINDS}
    if commands != expected_commands:
        problems.append("WinRM commands per server %s, expected %s" % (commands, expected_commands))

    # After clear: the same results as without faults.
    assert rerun.rc == 2, rerun.output
    if findings_by_host(rerun) != expected:
        problems.append("re-run %s != baseline %s" % (findings_by_host(rerun), expected))
    assert not problems, "\n".join(problems)


def test_enforce_under_every_fault(tmp_path):
    problems = []
    with start_fleet(tmp_path) as lab:
        before = lab.status()["servers"]
        faulted = faulted_run(lab, tmp_path, "enforce", "faulted")
        after_faults = lab.status()["servers"]
        lab.clear()
        lab.reset_counters()
        rerun = run_role(lab.inventory, "enforce", tmp_path / "rerun", "-f", FORKS)
        after_rerun = lab.status()["servers"]
        lab.reset_counters()
        third = run_role(lab.inventory, "enforce", tmp_path / "third", "-f", FORKS)
        after_third = lab.status()["servers"]

    assert faulted.rc != 0, faulted.output
    for fault in failing("enforce"):
        problems += reported_problems(faulted, fault, "enforce")
    # The canary, the second batch and the healthy server of the last batch finish; the unbound ones are fixed.
    recap = faulted.recap()
    for host in ("ex01", "ex02", "ex03", "ex04", "ex14"):
        entry = faulted.host(host)
        if entry["status"] != OK or not entry["compliant"] or recap[host]["failed"] or recap[host]["unreachable"]:
            problems.append("%s did not finish: report %s/%s, recap %s" % (host, entry["status"], entry["compliant"], recap.get(host)))
        if entry["changed"] is not (KINDS[host.upper()] == "unbound"):
            problems.append("%s: changed %s" % (host, entry["changed"]))
    # What each fault let through, as the lab saw it.
    for name, server in after_faults.items():
        fault = BY_HOST.get(name.lower())
        if fault is None:
            wanted = ("ok", "ok") if KINDS[name] == "unbound" else ()
        else:
            wanted = fault.enforce_mutations
        results = tuple(m["result"] for m in server["mutations"])
        if results != wanted:
            problems.append("%s: mutations %s, expected %s" % (name, results, wanted))
        if wanted and "error" not in wanted and not server["mail_flow"]["delivered"]:
            problems.append("%s: every step ran but mail does not flow: %s" % (name, server["mail_flow"]["last_error"]))
    problems += safety_problems(before, after_faults)

    # After clear: everything converges; only the servers a fault kept from changing change now.
    assert rerun.rc == 0, rerun.output
    for entry in rerun.report["hosts"]:
        if entry["status"] != OK or not entry["compliant"]:
            problems.append("re-run: %s %s %s" % (entry["host"], entry["status"], entry["error"]))
    changed = sorted(entry["host"] for entry in rerun.report["hosts"] if entry["changed"])
    if changed != ["ex05", "ex06", "ex07", "ex08", "ex11", "ex15"]:
        problems.append("re-run changed %s, expected the servers the faults kept from changing" % changed)
    problems += ["%s: mail does not flow after the re-run" % n for n, s in after_rerun.items() if not s["mail_flow"]["delivered"]]
    problems += safety_problems(before, after_rerun)

    # A third run: nothing to do, one read-only round trip per server.
    assert third.rc == 0, third.output
    if third.report["totals"]["changed"] != 0:
        problems.append("third run changed %s hosts" % third.report["totals"]["changed"])
    commands = {name: server["winrm"]["requests"]["Command"] for name, server in after_third.items()}
    if set(commands.values()) != {1}:
        problems.append("third run: WinRM commands per server %s" % commands)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# Single scenarios
# ---------------------------------------------------------------------------------------------


def test_a_fault_on_the_canary_stops_the_rollout_and_the_report_names_the_hosts_not_run(tmp_path):
    kinds = {"EX01": "unbound", "EX02": "unbound", "EX03": "healthy"}
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet(kinds)), tmp_path=tmp_path) as lab:
        before = lab.status()["servers"]
        lab.fault("EX01", "cmdlet", cmdlet="Enable-ExchangeCertificate")
        faulted = run_role(lab.inventory, "enforce", tmp_path / "faulted")
        after_faults = lab.status()["servers"]
        lab.clear()
        rerun = run_role(lab.inventory, "enforce", tmp_path / "rerun")
        after = lab.status()["servers"]

    assert faulted.rc == 2, faulted.output
    error = faulted.host("ex01")["error"]
    assert re.fullmatch(r"ex01: step 1 of 2 \(enable SMTP on [0-9A-F]{40} \(services: IIS, SMTP\)\) failed: %s \[EE9669E0,"
                        r"Microsoft\.Exchange\.Management\.SystemConfigurationTasks\.EnableExchangeCertificate\]\. Applied: nothing\. "
                        r"Not run: step 2 \(restore [0-9A-F]{40} as the internal transport certificate \(services: IMAP, POP, IIS, "
                        r"SMTP\)\)\. The result shows the state as re-read; run again to finish\." % AD_TRANSIENT, error), error
    assert faulted.junit_error("ex01").get("message") == error and faulted.summary_error("ex01") == error
    # max_fail_percentage: the canary failed, so the later batches never ran; the reports say so for each.
    assert sorted(faulted.recap()) == ["ex01"]
    assert [after_faults[name]["winrm"]["requests"]["Command"] for name in ("EX02", "EX03")] == [0, 0]
    for host in ("ex02", "ex03"):
        assert faulted.host(host)["status"] == FAILED and faulted.host(host)["error"] == "no result from this host in this run"
        assert faulted.junit_error(host) is not None and faulted.summary_error(host) == "no result from this host in this run"
    assert after_faults["EX01"]["mutations"][0]["result"] == "error" and len(after_faults["EX01"]["mutations"]) == 1
    assert safety_problems(before, after_faults) == []

    assert rerun.rc == 0, rerun.output
    assert all(entry["status"] == OK and entry["compliant"] for entry in rerun.report["hosts"])
    assert all(server["mail_flow"]["delivered"] for server in after.values())
    assert safety_problems(before, after) == []


def test_a_failed_restore_of_the_internal_transport_certificate_is_healed_by_the_next_run(tmp_path):
    """Enabling SMTP with -Force makes the public certificate the internal transport certificate; the
    restore (the second Enable-ExchangeCertificate) fails. The run must say so, and the next run must
    restore it: the previous thumbprint is still on the server, self-signed and enabled for SMTP."""
    kinds = {"EX01": "healthy", "EX02": "unbound"}
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet(kinds)), tmp_path=tmp_path) as lab:
        before = lab.status()["servers"]
        lab.fault("EX02", "cmdlet", cmdlet="Enable-ExchangeCertificate", after=1)
        faulted = run_role(lab.inventory, "enforce", tmp_path / "faulted")
        after_faults = lab.status()["servers"]
        lab.clear()
        rerun = run_role(lab.inventory, "enforce", tmp_path / "rerun")
        after = lab.status()["servers"]

    original = before["EX02"]["internal_transport_certificate"]
    public = next(c["thumbprint"] for c in before["EX02"]["certificates"] if c["source"] == "public")
    assert faulted.rc == 2, faulted.output
    error = faulted.host("ex02")["error"]
    assert error.startswith("ex02: step 2 of 2 (restore %s as the internal transport certificate (services: IMAP, POP, IIS, SMTP)) "
                            "failed: Microsoft.Exchange.Data.Directory.ADTransientException: " % original), error
    assert "Applied: step 1 (enable SMTP on %s (services: IIS, SMTP))." % public in error
    assert ("ex02: InternalTransportCertificateThumbprint is %s, it must be %s. Restore it: Enable-ExchangeCertificate "
            "-Thumbprint %s -Services SMTP -Force" % (public, original, original)) in error
    assert [m["result"] for m in after_faults["EX02"]["mutations"]] == ["ok", "error"]
    assert after_faults["EX02"]["internal_transport_certificate"] == public  # what the lab fault did

    # The next run, with the fault gone, must put the internal transport certificate back (converge).
    assert after["EX02"]["internal_transport_certificate"] == original, (
        "after the re-run the internal transport certificate of EX02 is still %s (was %s); the re-run reported %s/%s "
        "with rc %d" % (after["EX02"]["internal_transport_certificate"], original, rerun.host("ex02")["status"],
                        rerun.host("ex02")["compliant"], rerun.rc))
    assert rerun.rc == 0 and safety_problems(before, after) == []


@pytest.mark.matrix
def test_the_enforce_report_keeps_the_findings_that_enforcement_does_not_fix(tmp_path):
    """expiring.yml: EX01's trusted certificate expires in 20 days. Enforcement has nothing to change on
    EX01, but the certificate still expires: the enforce-mode report must say so, as the audit does."""
    with running_lab(os.path.join(REPO_ROOT, "tests", "lab", "fleets", "expiring.yml"), tmp_path=tmp_path) as lab:
        audit = run_role(lab.inventory, "audit", tmp_path / "audit", "--limit", "ex01")
        enforce = run_role(lab.inventory, "enforce", tmp_path / "enforce", "--limit", "ex01")
    assert "HM301" in {f["id"] for f in audit.host("ex01")["findings"]} and audit.rc == 2
    entry = enforce.host("ex01")
    assert entry["status"] == OK and entry["changed"] is False
    assert "HM301" in {f["id"] for f in entry["findings"]}, (
        "the enforce report has findings %s for ex01" % sorted({f["id"] for f in entry["findings"]}))
    assert entry["compliant"] is False and enforce.rc == 2


@pytest.mark.matrix
def test_remediation_passes_the_canary_when_it_fixes_the_server(tmp_path):
    """kb2888788.yml through remediate.yml: the canary EX01 is fixed (mail flows again) in the same
    round trip that re-reads it, while its queue to Exchange Online is still in Retry with the old TLS
    error until Exchange retries. The fixed canary must pass, so that the rollout goes on to EX02."""
    with running_lab(os.path.join(REPO_ROOT, "tests", "lab", "fleets", "kb2888788.yml"), tmp_path=tmp_path) as lab:
        run = run_role(lab.inventory, "enforce", tmp_path / "enforce")
        servers = lab.status()["servers"]
    assert servers["EX01"]["mail_flow"]["delivered"] is True and servers["EX01"]["mutations"]
    ex01 = run.host("ex01")
    failing_findings = ["%s %s: %s" % (f["severity"], f["id"], f["title"]) for f in ex01["findings"] if f["severity"] in ("critical", "warning")]
    assert ex01["status"] == OK and ex01["compliant"], "the fixed canary is reported not compliant: %s" % failing_findings
    assert run.host("ex02")["status"] == OK, run.host("ex02")["error"]
    assert run.rc == 0, run.output

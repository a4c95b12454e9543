"""playbooks/remediate.yml's batches through ansible-playbook, the real winrm plugin and the lab (issues 14.1, 12.2).

Fleet tests/lab/fleets/partial_batch.yml: EX01 holds only an internal-CA certificate (enforcement cannot fix
it: a certificate has to be installed first), EX02-EX07 hold the public certificate for IIS only
(enforcement enables SMTP on it). The lab's cmdlet fault makes EX04's Enable-ExchangeCertificate fail.

- A batch of which one host in four fails inside the role's block must stop the rollout before the next
  batch contacts any server. Ansible's own max_fail_percentage counts a host failed inside a block with
  always: only when the batch has ended, after it has decided to run the next batch.
- A host whose only problem is what enforcement cannot fix is not failed: as the canary it does not stop
  the rollout, and the reports and the last batch's report task say what it needs.
"""

from __future__ import annotations

import json
import os

from tests.integration.playbook_runs import hybrid_fleet, run_role, write_fleet
from tests.lab.testing import REPO_ROOT, running_lab

FLEET = os.path.join(REPO_ROOT, "tests", "lab", "fleets", "partial_batch.yml")
NO_RESULT = "no result from this host in this run"
BATCHES = json.dumps({"hybrid_readiness_serial": [1, 4, "100%"], "hybrid_readiness_max_fail_percentage": 10})
INSTALL = "has no certificate Exchange Online would trust. Install a certificate for mail.contoso.com"


def commands(servers: dict, name: str) -> int:
    return servers[name]["winrm"]["requests"]["Command"]


def test_a_batch_of_which_one_host_in_four_fails_stops_the_rollout_before_the_next_batch(tmp_path):
    # Without EX01: EX02 is the canary, EX03-EX06 the second batch (EX04 fails), EX07 the last batch.
    with running_lab(FLEET, tmp_path=tmp_path) as lab:
        lab.fault("EX04", "cmdlet", cmdlet="Enable-ExchangeCertificate")
        run = run_role(lab.inventory, "enforce", tmp_path / "reports", "--limit", "!ex01", "-e", BATCHES)
        servers = lab.status()["servers"]

    assert run.rc == 2, run.output
    # The canary and the three hosts of the second batch that did not fail were fixed; EX04's change failed.
    for name in ("EX02", "EX03", "EX05", "EX06"):
        assert [m["result"] for m in servers[name]["mutations"]] == ["ok", "ok"], (name, servers[name]["mutations"])
        assert servers[name]["mail_flow"]["delivered"], name
    assert [m["result"] for m in servers["EX04"]["mutations"]] == ["error"]
    # 1 of 4 failed, more than 10 %: the last batch was never contacted, and every report says so.
    assert commands(servers, "EX07") == 0 and not servers["EX07"]["mutations"], servers["EX07"]["winrm"]
    assert "ex07" not in run.recap(), run.recap()
    assert run.host("ex07")["status"] == "failed" and run.host("ex07")["error"] == NO_RESULT
    assert run.summary_error("ex07") == NO_RESULT and run.junit_error("ex07") is not None
    assert run.host("ex04")["status"] == "failed" and run.host("ex04")["error"].startswith("ex04: step 1 of 2 (enable SMTP on ")
    assert ("the rollout stops here: 1 of the 4 hosts of this batch failed (ex04), more than max_fail_percentage 10%; "
            "the 1 hosts of the next batches (ex07) were not contacted") in run.output
    # What was applied, per server, in report.json and summary.md.
    assert [len(run.host(h)["applied_changes"]) for h in ("ex02", "ex03", "ex04", "ex05", "ex06", "ex07")] == [2, 2, 0, 2, 2, 0]
    assert "## Applied changes" in run.summary and "- **ex03**: enable SMTP on " in run.summary


def test_a_canary_that_needs_what_enforcement_cannot_do_does_not_stop_the_rollout_and_is_reported(tmp_path):
    with running_lab(FLEET, tmp_path=tmp_path) as lab:
        run = run_role(lab.inventory, "enforce", tmp_path / "reports", "-e", BATCHES)
        servers = lab.status()["servers"]

    # EX01, the canary, is not a failed host; every later batch ran and fixed its servers.
    recap = run.recap()
    assert recap["ex01"]["failed"] == 0 and not run.fatal("ex01"), run.output
    assert not servers["EX01"]["mutations"]
    for name in ("EX02", "EX03", "EX04", "EX05", "EX06", "EX07"):
        assert [m["result"] for m in servers[name]["mutations"]] == ["ok", "ok"], (name, servers[name]["mutations"])
        assert servers[name]["mail_flow"]["delivered"], name
    # Reported: the task's warning, report.json, junit.xml, summary.md, and the last batch fails the run.
    assert "ex01: not compliant, and enforcement cannot fix it: mail.contoso.com" in run.output
    entry = run.host("ex01")
    assert (entry["status"], entry["compliant"], entry["changed"]) == ("ok", False, False), entry
    assert any(INSTALL in line for line in entry["cannot_fix"]), entry["cannot_fix"]
    assert run.report["totals"]["cannot_fix"] == 1 and run.report["compliant"] is False
    properties = {p.get("name"): p.get("value") for p in run.junit_suite("ex01").iter("property")}
    assert INSTALL in properties["cannot_fix"]
    assert "## Not compliant, and enforcement cannot fix it" in run.summary and "- **ex01**: mail.contoso.com" in run.summary
    assert run.rc == 2, run.output
    assert "1 hosts are not compliant and enforcement cannot fix them: ex01: mail.contoso.com" in run.output
    assert all(run.host(h)["compliant"] for h in ("ex02", "ex03", "ex04", "ex05", "ex06", "ex07"))


def test_a_dry_run_shows_the_plan_and_diff_of_every_host_that_would_change_and_reports_planned_changes(tmp_path):
    """Issue 14.2: remediate.yml --check --diff. The hosts that would change are the ones not compliant now; they
    must not fail (a failed task prints no diff), and the reports hold their planned changes, marked as a dry run."""
    with running_lab(FLEET, tmp_path=tmp_path) as lab:
        run = run_role(lab.inventory, "enforce", tmp_path / "reports", "--check", "--diff")
        servers = lab.status()["servers"]

    assert all(not server["mutations"] for server in servers.values())
    would_change = ("ex02", "ex03", "ex04", "ex05", "ex06", "ex07")
    for host in would_change:
        assert "changed: [%s]" % host in run.output, run.output
        assert not run.fatal(host), run.fatal(host)
    assert run.output.count("+++ after") >= len(would_change), run.output
    assert run.report["dry_run"] is True and run.report["mode"] == "enforce"
    for host in would_change:
        planned = run.host(host)["planned_changes"]
        assert len(planned) == 2 and planned[0].startswith("enable SMTP on ") and "internal transport certificate" in planned[1]
        assert run.host(host)["applied_changes"] == [] and run.host(host)["compliant"] is False
        assert "| %s | audited | **no** | dry run: 2 planned |" % host in run.summary
    assert "## Planned changes (dry run: check mode, nothing was changed)" in run.summary
    assert "(**dry run**: check mode, nothing was changed)" in run.summary
    # The host that enforcement cannot fix is reported as such in the dry run too.
    assert run.host("ex01")["cannot_fix"] and run.host("ex01")["planned_changes"] == []


def test_a_pin_of_the_organisations_send_connector_says_it_changes_the_servers_outside_its_batch(tmp_path):
    """Issue 14.1: the canary EX01 pins the one cloud send connector, whose other source servers (EX02, EX03, in
    the next batches) then present the pinned certificate too: the plan, the dry run and the reports say so."""
    fleet = hybrid_fleet({"EX01": "incident", "EX02": "healthy", "EX03": "healthy"})
    with running_lab(write_fleet(tmp_path / "fleet.yml", fleet), tmp_path=tmp_path) as lab:
        dry = run_role(lab.inventory, "enforce", tmp_path / "dry", "--check", "--limit", "ex01", "-v")
        run = run_role(lab.inventory, "enforce", tmp_path / "run")
        servers = lab.status()["servers"]

    said = "(organisation-wide: also changes the certificate EX02, EX03 present to Exchange Online)"
    assert dry.rc == 0 and said in dry.output, dry.output
    assert dry.host("ex01")["also_changes"] == ["EX02", "EX03"] and any(said in step for step in dry.host("ex01")["planned_changes"])
    assert run.rc == 0, run.output
    assert [m["cmdlet"] for m in servers["EX01"]["mutations"]][-1] == "Set-SendConnector" and not servers["EX02"]["mutations"]
    assert run.host("ex01")["also_changes"] == ["EX02", "EX03"] and any(said in step for step in run.host("ex01")["applied_changes"])
    assert "also changes EX02, EX03 (organisation-wide send connector)" in run.summary
    properties = {p.get("name"): p.get("value") for p in run.junit_suite("ex01").iter("property")}
    assert properties["also_changes"] == "EX02, EX03"


def test_a_host_stopped_before_a_shared_pin_another_source_server_cannot_present_is_cannot_fix(tmp_path):
    # tests/lab/fleets/mixed.yml, EX07: the organisation's send connector names a certificate renewed away; EX07's
    # renewal is on EX07 only, so pinning the shared connector to it would break the other source servers. The
    # mutating round trip re-pins EX07's own receive connector, then its guard stops before the shared pin
    # (_enforce.batch). Enforcement cannot do what is left (import the PFX on the other servers): not a failed host.
    with running_lab(os.path.join(REPO_ROOT, "tests", "lab", "fleets", "mixed.yml"), tmp_path=tmp_path) as lab:
        run = run_role(lab.inventory, "enforce", tmp_path / "reports", "--limit", "ex07")
        servers = lab.status()["servers"]
    # Its audit/enforce task is not failed (only the report task, which runs on the one host of this run, fails the run).
    assert "changed: [ex07]" in run.output and "fatal: [ex07]:" not in run.output, run.output
    assert run.report["totals"]["failed"] == 0 and run.report["result"] == "not_compliant", run.report["totals"]
    assert [m["cmdlet"] for m in servers["EX07"]["mutations"]] == ["Set-ReceiveConnector"], servers["EX07"]["mutations"]
    assert all(not servers[name]["mutations"] for name in servers if name != "EX07")
    entry = run.host("ex07")
    assert (entry["status"], entry["compliant"], entry["changed"]) == ("ok", False, True), entry
    assert any("also sends through send connector 'Outbound to Office 365' but does not hold certificate" in line
               for line in entry["cannot_fix"]), entry["cannot_fix"]
    assert run.rc == 2 and "not compliant and enforcement cannot fix them: ex07" in run.output, run.output

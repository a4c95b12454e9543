"""readiness_check, the role's one task per host, through ansible-playbook, the real winrm plugin and the lab.

What counts: the task fails exactly the hosts that do not meet fail_on, with a message a person can
read; its result is a summary (no facts: a fleet run keeps one small result per host); the host's
full record is on disk where readiness_report reads it; an unreachable server fails the task rather
than leaving the play, so that the report still runs; and the lab saw one read-only command per
server for an audit, at most two for an enforcement.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.playbook_runs import dead_port, derived_inventory, hybrid_fleet, run_role, write_fleet
from tests.lab.testing import run_ansible, running_lab

KINDS = {"EX01": "incident", "EX02": "healthy", "EX03": "unbound"}


def check(inventory, tmp_path, name: str, **args):
    """One readiness_check task on every host; (completed process, {host: result + "failed"})."""
    args = dict({"trust_bundle": "{{ hybridmail_trust_bundle }}", "report_dir": str(tmp_path / ("reports-%s" % name))}, **args)
    return run_play(inventory, tmp_path, name, {"hosts": "exchange", "gather_facts": False,
                                                "tasks": [{"hybridmail.exchange.readiness_check": args}]})


def run_play(inventory, tmp_path, name: str, play: dict):
    """ansible-playbook of play; (completed process, {host: its task result + "failed"})."""
    playbook = tmp_path / ("%s.yml" % name)
    playbook.write_text(yaml.safe_dump([play]), encoding="utf-8")
    tree = tmp_path / ("tree-%s" % name)
    completed = run_ansible([str(playbook)], inventory, program="ansible-playbook",
                            env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree", "ANSIBLE_CALLBACK_TREE_DIR": str(tree)})
    # The tree callback leaves "failed" out of what it writes; the play output says it.
    return completed, {path.name: dict(json.loads(path.read_text(encoding="utf-8")),
                                       failed="fatal: [%s]: FAILED! => " % path.name in completed.stdout)
                       for path in tree.iterdir()}


def record(result: dict) -> dict:
    with open(result["record"], encoding="utf-8") as handle:
        document = json.load(handle)
    assert document["record_id"] == result["record_id"]
    return document["entry"]


@pytest.mark.matrix
def test_audit_fails_the_hosts_that_are_not_ready_with_a_summary_and_records_the_rest(tmp_path):
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet(dict(KINDS, EX04="healthy"))), tmp_path=tmp_path) as lab:
        inventory = derived_inventory(lab.inventory, tmp_path / "inventory.yml", {"ex04": {"ansible_port": dead_port()}})
        lab.reset_counters()
        completed, results = check(inventory, tmp_path, "audit", event_lookback_days=7)
        servers = lab.status()["servers"]

    output = completed.stdout + completed.stderr
    assert completed.returncode == 2, output
    assert {host: (r["failed"], r["status"], r["compliant"]) for host, r in results.items()} == {
        "ex01": (True, "ok", False), "ex02": (False, "ok", True), "ex03": (True, "ok", False), "ex04": (True, "unreachable", False)}
    # Read-only: one command per reachable server, and nothing changed.
    assert {name: s["winrm"]["requests"]["Command"] for name, s in servers.items()} == {"EX01": 1, "EX02": 1, "EX03": 1, "EX04": 0}
    assert all(not s["mutations"] for s in servers.values())

    incident = results["ex01"]
    # The message is the findings, one per line of the summary; the plan says what enforce would do.
    assert incident["msg"] == "; ".join(incident["findings"]) and any(" HM101: " in line for line in incident["findings"])
    assert incident["counts"]["critical"] >= 1 and incident["error"] is None
    assert any(step.startswith("drop SMTP from ") for step in incident["plan"])
    # A summary, not the facts: those are in the record, with the findings judged from them.
    assert not {"facts", "certificates", "connectors", "steps"} & set(incident)
    incident_record = record(incident)
    assert incident_record["facts"]["certificates"] and {f["id"] for f in incident_record["findings"]} >= {"HM101"}
    assert results["ex02"]["findings"] == [] or all(not line.startswith("critical") for line in results["ex02"]["findings"])

    unreachable = results["ex04"]
    assert unreachable["msg"] == unreachable["error"] and unreachable["error"].startswith("ex04: connection failed: ")
    assert "unreachable" not in unreachable or not unreachable["unreachable"]
    unreachable_record = record(unreachable)
    assert unreachable_record.pop("duration_seconds") >= 0  # the junit.xml time of the host (issue 14.4)
    assert unreachable_record == {"unreachable": True, "error": unreachable["error"]}


# EX01's connector pin can make EX03's queue retry (and fail) after EX03's enforcement started but before
# EX03's own change: changed_at is when the mutating round trip was sent, so that retry reads as older than
# the change (it used to be when the run started, and the retry then read as current: HM402 critical).
def test_enforce_fixes_what_it_can_and_fail_on_never_fails_nothing(tmp_path):
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet(KINDS)), tmp_path=tmp_path) as lab:
        lab.reset_counters()
        completed, results = check(lab.inventory, tmp_path, "enforce", mode="enforce")
        servers = lab.status()["servers"]
        lab.reset_counters()
        never, again = check(lab.inventory, tmp_path, "again", fail_on="never", expiry_warning_days=400, expiry_critical_days=300)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert {host: (r["changed"], r["compliant"]) for host, r in results.items()} == {
        "ex01": (True, True), "ex02": (False, True), "ex03": (True, True)}
    assert all(s["mail_flow"]["delivered"] for s in servers.values())
    assert {name: s["winrm"]["requests"]["Command"] for name, s in servers.items()} == {"EX01": 2, "EX02": 1, "EX03": 2}
    # The record holds the state as re-read after the change.
    assert results["ex03"]["plan"] and record(results["ex03"])["changed"] is True

    # Every certificate now expires "soon": critical findings everywhere, but fail_on never fails nothing.
    assert never.returncode == 0, never.stdout + never.stderr
    assert all(r["compliant"] and not r["failed"] and r["counts"]["critical"] >= 1 for r in again.values())


def test_option_mistakes_fail_before_any_round_trip(tmp_path):
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet({"EX01": "healthy"})), tmp_path=tmp_path) as lab:
        lab.reset_counters()
        outcomes = {
            "critical after warning": check(lab.inventory, tmp_path, "days", expiry_warning_days=10, expiry_critical_days=20)[1],
            "bad exemption": check(lab.inventory, tmp_path, "exemption", exemptions=[{"id": "HM101"}])[1],
            "bad thumbprint": check(lab.inventory, tmp_path, "thumbprint", exempt_thumbprints=["not-a-thumbprint"])[1],
            "bad mode": check(lab.inventory, tmp_path, "mode", mode="fix")[1],
        }
        commands = lab.status()["servers"]["EX01"]["winrm"]["requests"]["Command"]
    assert commands == 0
    messages = {name: result["ex01"]["msg"] for name, result in outcomes.items()}
    assert all(result["ex01"]["failed"] for result in outcomes.values()), messages
    assert "expiry_critical_days (20) must not exceed expiry_warning_days (10)" in messages["critical after warning"]
    assert "reason" in messages["bad exemption"]
    assert "'not-a-thumbprint' is not a certificate thumbprint" in messages["bad thumbprint"]
    assert "mode" in messages["bad mode"] and "audit, enforce" in messages["bad mode"]


def prefixed_check(inventory, tmp_path, name: str, play_vars: dict, **args):
    """One readiness_check task with vars_prefix=checkvars under play_vars; as check()."""
    return run_play(inventory, tmp_path, name, {"hosts": "exchange", "gather_facts": False, "vars": play_vars, "tasks": [
        {"hybridmail.exchange.readiness_check": dict(args, vars_prefix="checkvars")}]})


@pytest.mark.matrix
def test_vars_prefix_reads_the_options_the_task_does_not_set_and_the_task_wins(tmp_path):
    """The role's way of passing its options (readiness_check's vars_prefix): each option not in the task comes from
    checkvars_<option>, templated when it is a template (the trust bundle here: with the default bundle the healthy
    server would not be trusted), and an option the task sets wins over its variable (fail_on)."""
    reports = tmp_path / "reports-from-vars"
    play_vars = {"checkvars_trust_bundle": "{{ hybridmail_trust_bundle }}", "checkvars_report_dir": str(reports),
                 "checkvars_fail_on": "never", "checkvars_event_lookback_days": 7, "checkvars_mode": "audit"}
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet({"EX01": "incident", "EX02": "healthy"})), tmp_path=tmp_path) as lab:
        completed, results = prefixed_check(lab.inventory, tmp_path, "prefixed", play_vars, fail_on="critical")
        servers = lab.status()["servers"]
    assert completed.returncode == 2, completed.stdout + completed.stderr
    # fail_on=critical from the task, not never from checkvars_fail_on: the incident fails, the healthy server passes.
    assert {host: (r["failed"], r["compliant"]) for host, r in results.items()} == {"ex01": (True, False), "ex02": (False, True)}
    assert all(r["record"].startswith(str(reports) + "/") for r in results.values())
    assert all(s["mutations"] == [] and s["winrm"]["requests"]["Command"] == 1 for s in servers.values())


def test_a_vars_prefix_variable_that_cannot_be_templated_fails_the_host_naming_it_before_any_round_trip(tmp_path):
    play_vars = {"checkvars_report_dir": str(tmp_path / "reports"), "checkvars_min_key_size": "{{ no_such_variable }}"}
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet({"EX01": "healthy"})), tmp_path=tmp_path) as lab:
        lab.reset_counters()
        completed, results = prefixed_check(lab.inventory, tmp_path, "broken", play_vars)
        commands = lab.status()["servers"]["EX01"]["winrm"]["requests"]["Command"]
    assert completed.returncode == 2 and commands == 0, completed.stdout + completed.stderr
    assert results["ex01"]["failed"]
    assert results["ex01"]["msg"].startswith("ex01: option min_key_size from variable checkvars_min_key_size: ")
    assert "no_such_variable" in results["ex01"]["msg"]


@pytest.mark.matrix
def test_the_role_reports_a_batch_in_which_no_server_answers(tmp_path):
    """Every server unreachable (the canary of a rollout, or a network outage): the task fails them, the play
    goes on to the report, and the report says unreachable for each."""
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet({"EX01": "healthy", "EX02": "healthy"})), tmp_path=tmp_path) as lab:
        inventory = derived_inventory(lab.inventory, tmp_path / "inventory.yml",
                                      {"ex01": {"ansible_port": dead_port()}, "ex02": {"ansible_port": dead_port()}})
        audit = run_role(inventory, "audit", tmp_path / "audit")
        enforce = run_role(inventory, "enforce", tmp_path / "enforce")
    for run in (audit, enforce):
        assert run.rc == 2, run.output
        assert [(entry["host"], entry["status"], entry["compliant"]) for entry in run.report["hosts"]] == [
            ("ex01", "unreachable", False), ("ex02", "unreachable", False) if run is audit else ("ex02", "failed", False)]
    # The rollout stopped after the canary: ex02 was never tried.
    assert enforce.host("ex02")["error"] == "no result from this host in this run"
    assert audit.host("ex02")["error"].startswith("ex02: connection failed: ")


@pytest.mark.matrix
def test_a_record_that_cannot_be_written_fails_the_host_but_keeps_what_happened(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the report directory should be\n", encoding="utf-8")
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet({"EX01": "unbound"})), tmp_path=tmp_path) as lab:
        completed, results = check(lab.inventory, tmp_path, "blocked", mode="enforce", report_dir=str(blocker))
        server = lab.status()["servers"]["EX01"]
    result = results["ex01"]
    assert completed.returncode == 2 and result["failed"], completed.stdout
    assert result["msg"].startswith("ex01: cannot write the host record for the report: ")
    # Then what the host's own summary says (its warnings: the queue has not retried yet).
    assert result["msg"].endswith(". " + ("; ".join(result["findings"]) or "The host itself is ready."))
    # The change happened (mail flows again) and the result says so.
    assert result["changed"] is True and result["compliant"] is True and server["mail_flow"]["delivered"]
    assert "record" not in result

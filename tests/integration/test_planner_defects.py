"""Issue 12's planner and findings defects, each through ansible-playbook, the real winrm plugin and the
lab (fleets tests/lab/fleets/planner_defects.yml and edge_untrusted.yml)."""

from __future__ import annotations

import os

from tests.integration.playbook_runs import run_role
from tests.integration.test_enforce import SEND_CONNECTOR, play, status
from tests.lab.testing import running_lab

FLEETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lab", "fleets")


def _thumbprint(server: dict, friendly_name: str) -> str:
    return next(c["thumbprint"] for c in server["certificates"] if c.get("friendly_name") == friendly_name)


def test_a_renewal_a_shared_connector_and_a_server_without_the_named_certificate(tmp_path):
    with running_lab(os.path.join(FLEETS, "planner_defects.yml"), tmp_path=tmp_path) as lab:
        run = run_role(lab.inventory, "audit", tmp_path / "reports")
        servers = status(lab)
        completed, results = play(lab, tmp_path, "smtp_certificate", limit="ex03")
        after = status(lab)
    # Item 1: the old copy is not what the pin selects; it is told to retire, not to renew.
    old, renewed = _thumbprint(servers["EX01"], "Contoso public 2025"), _thumbprint(servers["EX01"], "Contoso public 2026")
    ex01 = run.host("ex01")
    hm301 = next(f for f in ex01["findings"] if f["id"] == "HM301" and f["subject"] == old)
    assert hm301["severity"] == "warning" and hm301["evidence"]["renewal"] == renewed, hm301
    assert "Renew it before" not in hm301["remediation"]
    assert hm301["evidence"]["faces_exchange_online_via"] == []
    # Item 3: EX03 holds another certificate than the one the shared connector names.
    ex03 = run.host("ex03")
    hm203 = next(f for f in ex03["findings"] if f["id"] == "HM203")
    assert not hm203["auto_fix"] and "EX01, EX02 send through it too" in hm203["remediation"], hm203
    hm501 = next(f for f in run.report["fleet"]["findings"] if f["id"] == "HM501")
    assert hm501["evidence"]["deviating_hosts"] == ["ex03"], hm501["evidence"]
    # Enforce on EX03 must not re-point the organisation's connector at a certificate EX01 and EX02 lack.
    assert completed.returncode != 0
    assert "EX01" in results["EX03"]["msg"], results["EX03"]["msg"]
    assert not [m for m in after["EX03"]["mutations"] if m["cmdlet"] == "Set-SendConnector" and m["result"] == "ok"]
    assert after["EX01"]["mail_flow"]["delivered"] is True and after["EX02"]["mail_flow"]["delivered"] is True


def test_on_edge_the_send_connector_is_left_to_a_mailbox_server(tmp_path):
    with running_lab(os.path.join(FLEETS, "edge_untrusted.yml"), tmp_path=tmp_path) as lab:
        audit = run_role(lab.inventory, "audit", tmp_path / "audit")
        completed, results = play(lab, tmp_path, "smtp_certificate", limit="edge01")
        after = status(lab)
        again, results_again = play(lab, tmp_path, "smtp_certificate", limit="edge01")
        additive, results_additive = play(lab, tmp_path, "smtp_certificate", limit="edge02")
    # HM101 on an Edge is auto_fix only where dropping SMTP alone clears it whichever way Exchange reads
    # -Services: not on any Edge (the pin, which would, is a Mailbox server's to set).
    for host in ("edge01", "edge02"):
        hm101 = next(f for f in audit.host(host)["findings"] if f["id"] == "HM101")
        assert hm101["auto_fix"] is False, (host, hm101)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    edge = results["EDGE01"]
    # Item 4: no Set-SendConnector on an Edge (EdgeSync replicates the connector), said in the notes;
    # the untrusted certificate loses SMTP (this server applies -Services as KB 2888788 reads it).
    assert not [m for m in after["EDGE01"]["mutations"] if m["cmdlet"] == "Set-SendConnector"], after["EDGE01"]["mutations"]
    assert any("Mailbox server" in note and SEND_CONNECTOR in note for note in edge["notes"]), edge["notes"]
    internal = _thumbprint(after["EDGE01"], "Contoso internal mail")
    assert "SMTP" not in next(c["services"] for c in after["EDGE01"]["certificates"] if c["thumbprint"] == internal)
    assert after["EDGE01"]["mail_flow"]["delivered"] is True
    # Idempotent: the second run changes nothing.
    assert again.returncode == 0 and results_again["EDGE01"]["changed"] is False and results_again["EDGE01"]["plan"] == []
    # EDGE02 keeps SMTP (Enable-ExchangeCertificate as documented, additive): the run fails and says the fix
    # is a pin on a Mailbox server, not pin_connectors, which cannot pin an EdgeSync connector.
    assert additive.returncode != 0
    assert "on a Mailbox server (EdgeSync copies it" in results_additive["EDGE02"]["msg"], results_additive["EDGE02"]["msg"]


def _starttls(server: dict, connector: str) -> dict:
    return next(entry for entry in server["starttls"] if entry["connector"] == connector)


def test_pinning_alone_fixes_mail_flow_and_client_submission_keeps_its_certificate(tmp_path):
    with running_lab(os.path.join(FLEETS, "client_frontend.yml"), tmp_path=tmp_path) as lab:
        before = status(lab)["EX01"]
        run = run_role(lab.inventory, "audit", tmp_path / "audit")
        completed, results = play(lab, tmp_path, "smtp_certificate")
        after = status(lab)["EX01"]
        again, results_again = play(lab, tmp_path, "smtp_certificate")
    internal = _thumbprint(before, "Contoso client submission")
    assert _starttls(before, "EX01\\Client Frontend EX01")["certificate"] == internal
    # Item 5: the findings and the planner agree on the name Exchange Online checks for the receive connector.
    receive = [f for f in run.host("ex01")["findings"] if f["evidence"].get("kind") == "receive"]
    assert receive and all(f["evidence"]["exchange_online_names"] == ["mail.contoso.com"] for f in receive), receive
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert after["mail_flow"]["delivered"] is True
    # The pins take the untrusted certificate out of Exchange Online's reach; it keeps SMTP for client submission.
    assert "SMTP" in next(c["services"] for c in after["certificates"] if c["thumbprint"] == internal)
    assert _starttls(after, "EX01\\Client Frontend EX01") == _starttls(before, "EX01\\Client Frontend EX01")
    assert any(internal in note and "Client Frontend EX01" in note for note in results["EX01"]["notes"]), results["EX01"]["notes"]
    assert again.returncode == 0 and results_again["EX01"]["plan"] == []

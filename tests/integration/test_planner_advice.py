"""Issue 12's items 6-8 through ansible-playbook, the real winrm plugin and the lab: what the findings and
the plan tell an admin to do (fleets in tests/lab/fleets)."""

from __future__ import annotations

import os

from tests.integration.playbook_runs import run_role
from tests.integration.test_enforce import play, status
from tests.lab.testing import running_lab

FLEETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lab", "fleets")
IMPORT_INTERMEDIATE = "-CertStoreLocation Cert:\\LocalMachine\\CA"


def test_a_missing_intermediate_is_to_be_imported_and_enforce_says_so_without_changing_anything(tmp_path):
    with running_lab(os.path.join(FLEETS, "missing_intermediate.yml"), tmp_path=tmp_path) as lab:
        servers = status(lab)
        run = run_role(lab.inventory, "audit", tmp_path / "reports")
        completed, results = play(lab, tmp_path, "smtp_certificate", limit="ex02")
        after = status(lab)["EX02"]
    before = servers["EX02"]
    assert before["mail_flow"]["delivered"] is False and servers["EX01"]["mail_flow"]["delivered"] is True
    # The issuing CA certificate EX01 sends with the hybrid certificate, and EX02 lacks.
    intermediate = servers["EX01"]["mail_flow"]["gateway"]["sent_chain"][1]
    findings = run.host("ex02")["findings"]
    assert {"HM102", "HM204", "HM306"} <= {f["id"] for f in findings}, [f["id"] for f in findings]
    for finding in (f for f in findings if f["id"] in ("HM102", "HM204", "HM306")):
        text = finding["remediation"]
        assert IMPORT_INTERMEDIATE in text and intermediate in text, finding
        assert "Trusted Root Program" not in text and "Install a trusted certificate" not in text, finding
    # Enforce cannot import a CA certificate: it refuses before any change, and says what to import.
    assert completed.returncode != 0
    assert IMPORT_INTERMEDIATE in results["EX02"]["msg"], results["EX02"]["msg"]
    assert after["mutations"] == before["mutations"]


def test_an_ecc_certificate_is_not_enabled_without_exchanges_ecc_support(tmp_path):
    with running_lab(os.path.join(FLEETS, "ecc.yml"), tmp_path=tmp_path) as lab:
        before = status(lab)["EX01"]
        run = run_role(lab.inventory, "audit", tmp_path / "reports")
        completed, results = play(lab, tmp_path, "smtp_certificate", limit="ex01")
        after = status(lab)["EX01"]
    ecc = next(c["thumbprint"] for c in before["certificates"] if c.get("friendly_name") == "Contoso public ECC 2026")
    hm308 = [f for f in run.host("ex01")["findings"] if f["id"] == "HM308"]
    assert [(f["subject"], f["severity"]) for f in hm308] == [(ecc, "warning")], hm308
    assert "New-SettingOverride" in hm308[0]["remediation"] and "KeyAlgorithmUnsupported" in hm308[0]["remediation"]
    # Enforce refuses up front with the reason, rather than failing half-way on KeyAlgorithmUnsupported.
    assert completed.returncode != 0
    message = results["EX01"]["msg"]
    assert "ECC" in message and "New-SettingOverride" in message and ecc in message, message
    assert not [m for m in after["mutations"] if m["cmdlet"] == "Enable-ExchangeCertificate"], after["mutations"]


def test_out_of_support_exchange_versions_are_a_warning_finding_as_of_the_run_date(tmp_path):
    with running_lab(os.path.join(FLEETS, "versions.yml"), tmp_path=tmp_path) as lab:
        run = run_role(lab.inventory, "audit", tmp_path / "reports", "-e", "hybrid_readiness_fail_on=warning")
    ended = {"ex13": "2023-04-11", "ex16": "2025-10-14", "ex19": "2025-10-14"}
    for host in ("ex13", "ex16", "ex19", "exse"):
        hm404 = [f for f in run.host(host)["findings"] if f["id"] == "HM404"]
        if host == "exse":
            assert hm404 == [], hm404
            continue
        assert [(f["severity"], f["evidence"]["end_of_support"]) for f in hm404] == [("warning", ended[host])], (host, hm404)
        assert "Exchange Server SE" in hm404[0]["remediation"]
    # Visible where a pipeline looks: the summary, and a failed run under fail_on warning.
    assert "HM404" in run.summary
    assert run.rc == 2
    assert run.host("exse")["compliant"] is True and run.host("ex13")["compliant"] is False


def test_the_exchange_2010_session_is_refused_with_the_reason_before_any_server_is_contacted(tmp_path):
    with running_lab(os.path.join(FLEETS, "versions.yml"), tmp_path=tmp_path) as lab:
        completed, results = play(lab, tmp_path, "certificate_info", {"exchange_session": "e2010"}, limit="ex13")
        commands = status(lab)["EX13"]["winrm"]["requests"].get("Command", 0)
    assert completed.returncode != 0
    message = results["EX13"]["msg"]
    assert "Exchange 2010" in message and "PowerShell 2.0" in message and "PowerShell 3" in message, message
    assert commands == 0

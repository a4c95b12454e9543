"""_preflight: the checks of server_preflight, over answers from the lab's Exchange emulation and over
answers changed the way real servers can differ (language mode, PowerShell edition, RBAC that cannot be
read, a closed Application log, TLS switched off, RawData that does not parse)."""

from __future__ import annotations

import base64
import copy
import datetime
import json
import os

import pytest

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _model, _preflight, _runner, _snapshot
from tests.lab.exchange.fleet import Fleet

FLEETS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab", "fleets")
TODAY = datetime.date(2026, 12, 2)
USER = "Administrator"


@pytest.fixture(scope="module")
def preflight_fleet():
    return Fleet.load(os.path.join(FLEETS, "preflight.yml"))


@pytest.fixture(scope="module")
def answers(preflight_fleet):
    """The lab's answer to the preflight request, per server."""
    return {name: server.handle_request(_preflight.request(USER)) for name, server in preflight_fleet.servers.items()}


def statuses(result) -> dict:
    return {check["name"]: check["status"] for check in result["checks"]}


def details(result) -> dict:
    return {check["name"]: check["detail"] for check in result["checks"]}


def with_host(response, **properties):
    changed = copy.deepcopy(response)
    entry = next(e for e in changed["calls"] if e["id"] == "host")
    entry["objects"][0].update(properties)
    return changed


def with_error(response, call_id, error):
    changed = copy.deepcopy(response)
    entry = next(e for e in changed["calls"] if e["id"] == call_id)
    entry.clear()
    entry.update(id=call_id, ok=False, error=error)
    return changed


CHECKS = ["runner", "powershell", "language_mode", "session_user", "exchange_version", "exchange_role", "cmdlet_loading", "second_hop",
          "audit_reads", "rbac_audit", "rbac_enforce", "application_log", "tls", "ecc_support", "certificate_read"]


def test_the_request_is_one_read_only_request_of_allowed_cmdlets():
    request = _preflight.request(USER)
    assert request["read_only"] is True and request["version"] == _runner.WIRE_VERSION
    cmdlets = [call["cmdlet"] for call in request["calls"]]
    assert set(cmdlets) <= set(_runner.ALLOWED_CMDLETS)
    assert not [name for name in cmdlets if _runner.is_mutation(name)]
    # Every audit read runs once; RBAC is asked for every cmdlet the collection uses.
    assert set(_preflight.AUDIT_CMDLETS) <= set(cmdlets)
    asked = [call["parameters"]["Cmdlet"] for call in request["calls"] if call["cmdlet"] == "Get-ManagementRole"]
    assert asked == list(_preflight.AUDIT_CMDLETS + _preflight.ENFORCE_CMDLETS)
    assignment = next(call for call in request["calls"] if call["cmdlet"] == "Get-ManagementRoleAssignment")
    assert assignment["parameters"] == {"RoleAssignee": USER, "Delegating": False}
    assert "Get-ManagementRoleAssignment" not in [c["cmdlet"] for c in _preflight.request(None)["calls"]]


def test_healthy_server_is_ready_for_audit_and_enforce(answers):
    result = _preflight.evaluate(answers["EX01"], USER, TODAY)
    assert [check["name"] for check in result["checks"]] == CHECKS
    assert set(statuses(result).values()) == {"ok"}, details(result)
    assert result["ready_for"] == {"audit": True, "enforce": True}
    facts = result["facts"]
    assert facts["exchange"]["product"] == "Exchange Server SE" and facts["exchange"]["supported"] is True
    assert facts["session"]["load"] == "snapin"
    assert facts["certificates"]["count"] == facts["certificates"]["parsed"] == 3
    assert facts["rbac"]["allowed"]["Set-SendConnector"] is True


def test_missing_role_for_enforce_fails_rbac_enforce_only(answers):
    result = _preflight.evaluate(answers["EX02"], USER, TODAY)
    assert statuses(result)["rbac_enforce"] == "failed"
    assert statuses(result)["rbac_audit"] == "ok"  # Get-SendConnector still comes with View-Only Configuration
    assert details(result)["rbac_enforce"] == "Administrator may not run Set-SendConnector (no role assignment for Send Connectors)"
    assert result["ready_for"] == {"audit": True, "enforce": False}
    failing = _preflight.judge(result)
    assert _preflight.failure_message("ex02", failing) == (
        "ex02: preflight failed: rbac_enforce (failed): Administrator may not run Set-SendConnector "
        "(no role assignment for Send Connectors)")
    # An audit-only preflight only warns about it.
    audit_only = _preflight.evaluate(answers["EX02"], USER, TODAY, required_for=("audit",))
    assert statuses(audit_only)["rbac_enforce"] == "warning" and not _preflight.judge(audit_only)
    assert _preflight.judge(audit_only, fail_on_warning=True)


def test_edge_server_has_no_rbac_and_no_hybrid_configuration(answers):
    result = _preflight.evaluate(answers["EDGE01"], USER, TODAY)
    assert statuses(result)["exchange_role"] == "ok" and details(result)["exchange_role"] == "Edge Transport"
    assert statuses(result)["audit_reads"] == "ok"
    assert statuses(result)["rbac_audit"] == statuses(result)["rbac_enforce"] == "warning"
    assert "does not use RBAC" in details(result)["rbac_enforce"]
    assert result["ready_for"] == {"audit": True, "enforce": True}
    assert result["facts"]["rbac"]["not_used"] is True


def test_exchange_2013_is_flagged_out_of_support(answers):
    result = _preflight.evaluate(answers["EX13"], USER, TODAY)
    assert statuses(result)["exchange_version"] == "warning"
    assert details(result)["exchange_version"] == "Exchange Server 2013 (15.0.1497.2): out of support since 2023-04-11"
    assert result["ready_for"]["audit"] is True


@pytest.mark.parametrize("version, product", [
    ("Version 15.2 (Build 2562.17)", "Exchange Server SE"),
    ("Version 15.2 (Build 1748.10)", "Exchange Server 2019"),
    ("Version 15.1 (Build 2507.6)", "Exchange Server 2016"),
    ("Version 15.0 (Build 1497.2)", "Exchange Server 2013"),
    ("Version 14.3 (Build 123.4)", "Exchange Server 2010"),
    ("15.2.2562.17", "Exchange Server SE"),
    ("something else", None),
])
def test_admin_display_version_names_the_product(version, product):
    assert _model.exchange_product(version)[0] == product


def test_version_support_follows_the_date(answers):
    response = copy.deepcopy(answers["EX01"])
    server = next(e for e in response["calls"] if e["id"] == "server")
    server["objects"][0]["AdminDisplayVersion"] = "Version 15.2 (Build 1748.10)"
    assert statuses(_preflight.evaluate(response, USER, datetime.date(2025, 10, 14)))["exchange_version"] == "ok"
    assert statuses(_preflight.evaluate(response, USER, datetime.date(2025, 10, 15)))["exchange_version"] == "warning"
    server["objects"][0]["AdminDisplayVersion"] = "Version 14.3 (Build 123.4)"
    result = _preflight.evaluate(response, USER, TODAY)
    assert statuses(result)["exchange_version"] == "failed" and result["ready_for"]["audit"] is False


def test_language_mode_edition_and_user_when_the_runner_reports_them(answers):
    reported = with_host(answers["EX01"], PSEdition="Desktop", LanguageMode="FullLanguage", UserName="CONTOSO\\Administrator")
    result = _preflight.evaluate(reported, USER, TODAY)
    assert details(result)["language_mode"] == "FullLanguage"
    assert details(result)["session_user"] == "CONTOSO\\Administrator"
    assert details(result)["powershell"] == "PowerShell 5.1.20348.2849 (Desktop)"
    assert set(statuses(result).values()) == {"ok"}

    constrained = _preflight.evaluate(with_host(answers["EX01"], LanguageMode="ConstrainedLanguage"), USER, TODAY)
    assert statuses(constrained)["language_mode"] == "failed" and constrained["ready_for"]["audit"] is False

    core = _preflight.evaluate(with_host(answers["EX01"], PSEdition="Core", PowerShellVersion="7.4.6"), USER, TODAY)
    assert statuses(core)["powershell"] == "failed"

    other = _preflight.evaluate(with_host(answers["EX01"], UserName="CONTOSO\\svc-other"), USER, TODAY)
    assert statuses(other)["session_user"] == "warning"
    assert "RBAC was checked for Administrator" in details(other)["session_user"]


def test_a_runner_without_the_new_properties_is_still_judged(answers):
    """Until the runner reports PSEdition, LanguageMode and UserName they are null: never an error."""
    result = _preflight.evaluate(with_host(answers["EX01"], PSEdition=None, LanguageMode=None, UserName=None), USER, TODAY)
    assert statuses(result)["language_mode"] == statuses(result)["session_user"] == "ok"
    assert "not reported" in details(result)["language_mode"]


def test_rbac_that_cannot_be_read_is_a_warning_and_not_enforce_ready(answers):
    denied = with_error(answers["EX01"], "assignments", {
        "type": "System.Management.Automation.CommandNotFoundException", "category": "ObjectNotFound",
        "message": "The term 'Get-ManagementRoleAssignment' is not recognized", "fqid": "CommandNotFoundException"})
    result = _preflight.evaluate(denied, USER, TODAY)
    assert statuses(result)["rbac_audit"] == statuses(result)["rbac_enforce"] == "warning"
    assert "could not tell" in details(result)["rbac_enforce"]
    assert result["ready_for"] == {"audit": True, "enforce": False}
    no_user = _preflight.evaluate(answers["EX01"], None, TODAY)
    assert "set rbac_user" in details(no_user)["rbac_enforce"]


def test_application_log_empty_is_readable_access_denied_is_not(answers):
    assert details(_preflight.evaluate(answers["EX01"], USER, TODAY))["application_log"] == "readable (no events in it)"
    denied = with_error(answers["EX01"], "application_log", {
        "type": "System.UnauthorizedAccessException", "category": "NotSpecified",
        "message": "Attempted to perform an unauthorized operation.",
        "fqid": "System.UnauthorizedAccessException,Microsoft.PowerShell.Commands.GetWinEventCommand"})
    result = _preflight.evaluate(denied, USER, TODAY)
    assert statuses(result)["application_log"] == "warning"
    assert "unauthorized operation" in details(result)["application_log"]


def test_tls_off_is_a_warning(answers):
    response = copy.deepcopy(answers["EX01"])
    tls = next(e for e in response["calls"] if e["id"] == "tls")
    tls["objects"][0]["Tls12ClientEnabled"] = False
    result = _preflight.evaluate(response, USER, TODAY)
    assert statuses(result)["tls"] == "warning" and "Tls12ClientEnabled" in details(result)["tls"]


def test_ecc_support_unreadable_is_a_warning_that_keeps_the_server_ready(answers):
    assert statuses(_preflight.evaluate(answers["EX01"], USER, TODAY))["ecc_support"] == "ok"
    failed = with_error(answers["EX01"], "setting_overrides", {
        "type": "ADOperationException", "category": "ReadError", "message": "Active Directory operation failed on DC01.",
        "fqid": "X,Microsoft.Exchange.Management.SystemConfigurationTasks.GetSettingOverride"})
    result = _preflight.evaluate(failed, USER, TODAY)
    assert statuses(result)["ecc_support"] == "warning" and "Active Directory operation failed" in details(result)["ecc_support"]
    assert "no certificate with an ECC key" in details(result)["ecc_support"] and result["facts"]["ecc_support"] is None
    assert result["ready_for"]["audit"] is True


def test_unparsable_raw_data_fails_the_certificate_read(answers):
    response = copy.deepcopy(answers["EX01"])
    certificates = next(e for e in response["calls"] if e["id"] == "certificates")
    certificates["objects"][0]["RawData"] = base64.b64encode(b"not a certificate").decode()
    result = _preflight.evaluate(response, USER, TODAY)
    assert statuses(result)["certificate_read"] == "failed"
    assert result["facts"]["certificates"]["parsed"] == 2


def test_a_failed_audit_read_fails_audit_reads(answers):
    failed = with_error(answers["EX01"], "probe_queues", {"type": "System.Exception", "category": "NotSpecified",
                                                          "message": "queue viewer unavailable", "fqid": "X"})
    result = _preflight.evaluate(failed, USER, TODAY)
    assert statuses(result)["audit_reads"] == "failed" and "Get-Queue" in details(result)["audit_reads"]
    assert result["ready_for"]["audit"] is False


def test_failure_result_is_one_failed_check_in_one_line():
    result = _preflight.failure_result("LanguageMode", "ex03: LanguageMode: ConstrainedLanguage\non EX03", "language_mode")
    assert result["checks"] == [{"name": "language_mode", "status": "failed", "detail": "ex03: LanguageMode: ConstrainedLanguage on EX03"}]
    message = _preflight.failure_message("ex03", _preflight.judge(result))
    assert "\n" not in message and message.startswith("ex03: preflight failed: language_mode (failed)")
    assert "restricted Microsoft.Exchange endpoint" in _preflight.no_result_hint("ex03: the runner printed no result line")


def test_table_has_one_line_per_check(answers):
    result = _preflight.evaluate(answers["EX02"], USER, TODAY)
    lines = _preflight.table_lines("ex02", result["checks"])
    assert len(lines) == len(CHECKS)
    assert lines[CHECKS.index("rbac_enforce")].split()[:3] == ["ex02", "rbac_enforce", "failed"]


def test_diagnostics_reduce_certificate_bodies_and_hold_no_secret(answers, tmp_path):
    password = "Sup3r-Secret-Pw!"
    response = copy.deepcopy(answers["EX01"])
    # A server that echoes the password in an error message (it should never, but if it does).
    response["calls"][-1] = {"id": response["calls"][-1]["id"], "ok": False,
                             "error": {"type": "X", "message": "logon as Administrator:%s failed" % password}}
    chain_like = {"ChainRawData": [next(e for e in response["calls"] if e["id"] == "certificates")["objects"][0]["RawData"]]}
    response["extra"] = chain_like
    result = _preflight.evaluate(response, USER, TODAY)
    document = _preflight.diagnostics("ex01", _preflight.request(USER), response, None, result,
                                      {"round_trip_s": 0.2}, {"connection": "winrm"})
    path = _preflight.write_diagnostics(str(tmp_path), "ex01", document, _preflight.secret_variants(USER, password))
    text = open(path, encoding="utf-8").read()
    assert password not in text and _preflight.REDACTED in text
    assert base64.b64encode(("%s:%s" % (USER, password)).encode()).decode() not in text
    loaded = json.loads(text)
    certificates = next(e for e in loaded["response"]["calls"] if e["id"] == "certificates")["objects"]
    for certificate in certificates:
        assert certificate["RawData"] == "<certificate %s, %d bytes>" % (
            certificate["Thumbprint"], len(base64.b64decode(
                next(o for o in next(e for e in answers["EX01"]["calls"] if e["id"] == "certificates")["objects"]
                     if o["Thumbprint"] == certificate["Thumbprint"])["RawData"])))
    assert loaded["response"]["extra"]["ChainRawData"][0].startswith("<certificate ")
    assert "MII" not in text  # no DER in base64 anywhere
    assert [(c["name"], c["status"]) for c in loaded["checks"]] == [(c["name"], c["status"]) for c in result["checks"]]
    assert loaded["timings"] == {"round_trip_s": 0.2}


def test_lab_rbac_answers_like_the_cmdlet_reference(preflight_fleet):
    from tests.lab.exchange.calls import call, request

    server = preflight_fleet.servers["EX01"]
    roles = server.handle_request(request(call("Get-ManagementRole", "r", ["Name", "RoleType"], Cmdlet="Set-SendConnector")))
    assert roles["calls"][0]["objects"] == [{"Name": "Send Connectors", "RoleType": "SendConnectors"}]
    every = server.handle_request(request(call("Get-ManagementRoleAssignment", "a", ["Name", "Role", "RoleAssignmentDelegationType"],
                                               RoleAssignee="CONTOSO\\Administrator")))["calls"][0]["objects"]
    regular = server.handle_request(request(call("Get-ManagementRoleAssignment", "a", ["Name"], RoleAssignee="Administrator",
                                                 Delegating=False, Role="Send Connectors")))["calls"][0]["objects"]
    assert {"Name": "Send Connectors-Organization Management", "Role": "Send Connectors",
            "RoleAssignmentDelegationType": "Regular"} in every
    assert any(o["RoleAssignmentDelegationType"] == "DelegatingOrgWide" for o in every)
    assert regular == [{"Name": "Send Connectors-Organization Management"}]
    # A parameter the cmdlet does not have is a binding error, as PowerShell reports it.
    bad = server.handle_request(request(call("Get-ManagementRole", "r", ["Name"], Cmdlets="Set-SendConnector")))
    assert bad["calls"][0]["error"]["fqid"].startswith("NamedParameterNotFound,")
    edge = preflight_fleet.servers["EDGE01"].handle_request(request(call("Get-ManagementRole", "r", ["Name"], Cmdlet="Get-Queue")))
    assert edge["calls"][0]["error"]["fqid"] == "CommandNotFoundException"


def test_snapshot_request_helpers_are_shared():
    """The preflight reads certificates with the audit's properties, so _model parses them the same way."""
    certificates = next(c for c in _preflight.calls(USER) if c["id"] == "certificates")
    assert certificates["properties"] == list(_snapshot.CERTIFICATE_PROPERTIES)


@pytest.mark.parametrize("rbac, message", [
    ({"missing_roles": ["No Such Role"]}, "unknown roles No Such Role"),
    ({"role_groups": ["Domain Admins"]}, "unknown role groups Domain Admins"),
    ({"members": []}, "a mapping with role_groups and missing_roles"),
])
def test_lab_rbac_fleet_field_is_checked(rbac, message):
    from tests.lab.exchange.fleet import FleetError

    with pytest.raises(FleetError, match=message):
        Fleet.from_dict({"servers": [{"name": "EX01", "rbac": rbac}]})


def test_lab_server_management_role_group_cannot_set_send_connectors():
    fleet = Fleet.from_dict({"organization": {"rbac": {"role_groups": ["Server Management"]}}, "servers": [{"name": "EX01"}]})
    result = _preflight.evaluate(fleet.servers["EX01"].handle_request(_preflight.request(USER)), USER, TODAY)
    assert statuses(result)["rbac_enforce"] == "failed"
    assert "Set-SendConnector" in details(result)["rbac_enforce"]
    assert "Enable-ExchangeCertificate" not in details(result)["rbac_enforce"]
    assert statuses(result)["rbac_audit"] == "failed"  # no View-Only Configuration: Get-SendConnector, Get-HybridConfiguration


def test_the_second_hop_fails_the_preflight_naming_the_fix():
    """tests/lab/fleets/second_hop.yml EX01: the snap-in's cmdlets cannot reach AD as the WinRM user."""
    fleet = Fleet.load(os.path.join(FLEETS, "second_hop.yml"))
    result = _preflight.evaluate(fleet.servers["EX01"].handle_request(_preflight.request(USER)), USER, TODAY)
    assert statuses(result)["second_hop"] == "failed"
    assert details(result)["second_hop"].startswith("server: Microsoft.Exchange.Data.Directory.ADTransientException: "
                                                    "Active Directory server DC01.contoso.com is not available")
    assert details(result)["second_hop"].endswith(_runner.SECOND_HOP_ADVICE)
    assert result["ready_for"] == {"audit": False, "enforce": False}
    delegated = _preflight.evaluate(fleet.servers["EX03"].handle_request(_preflight.request(USER)), USER, TODAY)
    assert statuses(delegated)["second_hop"] == "ok" and delegated["ready_for"]["enforce"] is True


def test_second_hop_advice_recognises_only_the_second_hop():
    assert _runner.second_hop_advice("Active Directory server DC01 is not available. Error message: x") == _runner.SECOND_HOP_ADVICE
    assert _runner.second_hop_advice("... errorcode 0x8009030e occurred while using Kerberos authentication") != ""
    assert _runner.second_hop_advice("Access is denied.") == "" and _runner.second_hop_advice(None) == ""


def test_session_load_advice_explains_the_prompt_and_the_second_hop():
    prompt = "cannot load the Exchange cmdlets (remote_exchange: %s (after: x))" % _runner.NONINTERACTIVE_MESSAGE
    assert _runner.session_load_advice(prompt) == _runner.PROMPT_ADVICE
    both = prompt.replace("x))", "... errorcode 0x8009030e occurred ...))")
    assert _runner.session_load_advice(both) == _runner.PROMPT_ADVICE + "; probably " + _runner.SECOND_HOP_ADVICE
    assert _runner.session_load_advice("The snap-in is not installed.") == ""

"""The lab's emulation of runner.ps1's request execution (docs/wire-contract.md)."""

from __future__ import annotations

import base64
import datetime
import json
import os
import threading

import pytest
from cryptography import x509

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _runner
from tests.lab.exchange.calls import COMPUTERNAME, call, days_ago, request
from tests.lab.wire import contract as runner_contract
from tests.lab.exchange.fleet import Fleet

FLEETS = os.path.join(os.path.dirname(__file__), "..", "..", "lab", "fleets")
ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture
def fleet():
    return Fleet.load(os.path.join(FLEETS, "kb2888788.yml"))


@pytest.fixture
def ex01(fleet):
    return fleet.servers["EX01"]


def _certs(server, *properties):
    response = server.handle_request(request(call("Get-ExchangeCertificate", properties=properties,
                                                  Server=COMPUTERNAME)))
    return response["calls"][0]["objects"]


def _by_subject_part(server, part):
    return [c for c in _certs(server, "Thumbprint", "Issuer", "Services") if part in c["Issuer"]][0]


# ------------------------------------------------------------------------------ refusals


def test_response_envelope(ex01):
    response = ex01.handle_request(request(call("Get-HybridmailHost", properties=["ComputerName"])))
    assert response["version"] == 1 and response["host"] == "EX01"
    assert response["runner"]["powershell"].startswith("5.1.")
    assert response["runner"]["load"] == "none"  # no Exchange cmdlet needed, nothing loaded
    assert isinstance(response["runner"]["elapsed_ms"], int)
    assert response["calls"] == [{"id": "Get-HybridmailHost", "ok": True, "objects": [{"ComputerName": "EX01"}]}]


@pytest.mark.parametrize(
    "bad, kind",
    [
        ({"version": 2, "read_only": True, "calls": []}, "BadRequest"),
        ({"version": 1, "read_only": True, "session": {"load": "magic"}, "calls": []}, "BadRequest"),
        ({"version": 1, "read_only": True, "calls": "Get-ExchangeServer"}, "BadRequest"),
        (["not", "an", "object"], "BadRequest"),
        (request(call("Get-HybridmailHost", properties=["X"], Bogus={"__hybridmail": "nope"})), "BadRequest"),
        (request(call("Get-WinEvent", FilterHashtable={"StartTime": {"__hybridmail": "days_ago", "value": "7"}})),
         "BadRequest"),
        (request(call("Set-SendConnector", expect=[], Identity="x"), read_only=False), "BadRequest"),
        (request(call("Invoke-Expression", Command="calc")), "RequestRefused"),
        (request(call("Get-ChildItem")), "RequestRefused"),
        (request(call("Get-ExchangeServer"), call("Remove-ExchangeCertificate", Thumbprint="AB"), read_only=True),
         "RequestRefused"),
    ],
)
def test_requests_refused_whole(ex01, bad, kind):
    before = ex01.call_counts.copy()
    response = ex01.handle_request(bad)
    assert response["error"]["type"] == kind and response["calls"] == []
    assert response["host"] == "EX01" and response["version"] == 1
    assert ex01.call_counts == before  # nothing ran


def test_read_only_allows_every_get(ex01):
    response = ex01.handle_request(request(call("Get-ExchangeServer"), call("Get-HybridmailTlsState"), read_only=True))
    assert [c["ok"] for c in response["calls"]] == [True, True]


# -------------------------------------------------------------------------------- session


def test_session_load_methods(fleet):
    server = fleet.servers["EX01"]
    assert server.handle_request(request(call("Get-ExchangeServer")))["runner"]["load"] == "snapin"
    assert server.handle_request(request(call("Get-ExchangeServer"), load="remote_exchange"))["runner"]["load"] == (
        "remote_exchange"
    )
    # Exchange 2010's snap-in is not a load any more (runner.ps1 $SessionLoads): refused before anything runs.
    refused = server.handle_request(request(call("Get-ExchangeServer"), load="e2010"))
    assert refused["error"]["type"] == "BadRequest" and "session.load" in refused["error"]["message"], refused


def test_session_load_none_leaves_exchange_cmdlets_unknown(ex01):
    response = ex01.handle_request(request(call("Get-ExchangeServer"), call("Get-HybridmailHost"), load="none"))
    first, second = response["calls"]
    assert first["ok"] is False and first["error"]["type"] == "System.Management.Automation.CommandNotFoundException"
    assert second["ok"] is True


def test_session_load_error_from_fleet():
    fleet = Fleet.from_dict({"servers": [{"name": "EX01", "session": {"load_error": "snap-in broken"}}]})
    response = fleet.servers["EX01"].handle_request(request(call("Get-ExchangeServer")))
    assert response["error"] == {"type": "SessionLoadFailed", "message": "snap-in broken"}
    # A request without Exchange cmdlets does not load anything, so it still works.
    assert fleet.servers["EX01"].handle_request(request(call("Get-HybridmailHost")))["calls"][0]["ok"]


# ------------------------------------------------------------------- parameters and values


def test_typed_values(ex01):
    response = ex01.handle_request(request(
        call("Get-ExchangeServer", properties=["Name"], Identity=COMPUTERNAME),
        call("Get-WinEvent", properties=["Id", "TimeCreated"], MaxEvents=5,
             FilterHashtable={"LogName": "Application", "ProviderName": "MSExchangeTransport", "Id": 2004,
                              "StartTime": days_ago(7)}),
    ))
    assert response["calls"][0]["objects"] == [{"Name": "EX01"}]
    events = response["calls"][1]["objects"]
    assert events and all(e["Id"] == 2004 for e in events)
    # days_ago(7) excludes the preloaded occurrence from 9 days ago.
    oldest = min(datetime.datetime.strptime(e["TimeCreated"], ISO_UTC) for e in events)
    assert datetime.datetime.utcnow() - oldest < datetime.timedelta(days=7)


def test_value_conversion(ex01):
    objects = _certs(ex01, "Thumbprint", "Services", "NotAfter", "RawData", "IsSelfSigned", "PublicKeySize",
                     "CertificateDomains", "NoSuchProperty")
    self_signed = objects[0]
    assert self_signed["Services"] == "IMAP, POP, IIS, SMTP"
    datetime.datetime.strptime(self_signed["NotAfter"], ISO_UTC)
    cert = x509.load_der_x509_certificate(base64.b64decode(self_signed["RawData"]))
    assert cert.subject.rfc4514_string() == "CN=EX01"
    assert self_signed["IsSelfSigned"] is True and self_signed["PublicKeySize"] == 2048
    assert self_signed["CertificateDomains"] == ["EX01", "ex01.contoso.com"]
    assert self_signed["NoSuchProperty"] is None
    assert list(self_signed) == ["Thumbprint", "Services", "NotAfter", "RawData", "IsSelfSigned", "PublicKeySize",
                                 "CertificateDomains", "NoSuchProperty"]


def test_property_names_case_insensitive_and_no_properties(ex01):
    response = ex01.handle_request(request(
        call("Get-ExchangeServer", properties=["name", "FQDN"], Identity=COMPUTERNAME),
        call("Get-ExchangeServer", "noprops", Identity=COMPUTERNAME),
    ))
    assert response["calls"][0]["objects"] == [{"name": "EX01", "FQDN": "ex01.contoso.com"}]
    assert response["calls"][1] == {"id": "noprops", "ok": True, "objects": []}


def test_parameter_names_case_insensitive_and_prefixes(ex01):
    thumbprint = _certs(ex01, "Thumbprint")[0]["Thumbprint"]
    response = ex01.handle_request(request(
        call("Get-ExchangeCertificate", "lower", properties=["Thumbprint"], thumbprint=thumbprint.lower()),
        call("Get-ExchangeCertificate", "prefix", properties=["Thumbprint"], Thumb=thumbprint),
    ))
    assert [c["objects"][0]["Thumbprint"] for c in response["calls"]] == [thumbprint, thumbprint]


@pytest.mark.parametrize(
    "cmdlet, parameters, fqid",
    [
        ("Get-ExchangeCertificate", {"Bogus": 1}, "NamedParameterNotFound"),
        ("Get-ExchangeCertificate", {"Server": ["EX01", "EX02"]}, "CannotConvertArgument"),
        ("Enable-ExchangeCertificate", {"Thumbprint": "AB", "S": "x"}, "AmbiguousParameter"),
        ("Enable-ExchangeCertificate", {"Thumbprint": "AB", "Services": "IIS", "Force": "yes"},
         "ParameterArgumentTransformationError"),
        ("Get-WinEvent", {"MaxEvents": "many"}, "CannotConvertArgumentNoMessage"),
        ("Get-WinEvent", {"FilterHashtable": "LogName=Application"}, "CannotConvertArgumentNoMessage"),
    ],
)
def test_parameter_binding_errors(ex01, cmdlet, parameters, fqid):
    response = ex01.handle_request(request(call(cmdlet, **parameters)))
    error = response["calls"][0]["error"]
    assert error["type"].startswith("System.Management.Automation.ParameterBinding")
    assert error["fqid"].startswith(fqid + ",")
    command_class = cmdlet.replace("-", "") + ("Command" if cmdlet == "Get-WinEvent" else "")
    assert error["fqid"].split(",", 1)[1].endswith(command_class)
    assert error["category"] == "InvalidArgument"


def test_missing_mandatory_parameter(ex01):
    response = ex01.handle_request(request(call("Set-SendConnector", TlsCertificateName=None), read_only=False))
    error = response["calls"][0]["error"]
    assert error["fqid"].startswith("MissingMandatoryParameter,") and "Identity" in error["message"]


def test_common_parameters_are_accepted(ex01):
    response = ex01.handle_request(request(call("Get-ExchangeServer", properties=["Name"], Identity=COMPUTERNAME,
                                                ErrorAction="Stop", Verbose=False)))
    assert response["calls"][0]["ok"]


# ------------------------------------------------------------------ guards, abort, skipped


def test_guard_match_and_mismatch(ex01):
    thumbprint = _certs(ex01, "Thumbprint")[0]["Thumbprint"]
    good = [{"Thumbprint": thumbprint, "Services": "IMAP, POP, IIS, SMTP"}]
    bad = [{"Thumbprint": thumbprint, "Services": "SMTP"}]
    response = ex01.handle_request(request(
        call("Get-ExchangeCertificate", "good", expect=good, Thumbprint=thumbprint),
        call("Get-ExchangeCertificate", "bad", properties=["Services"], expect=bad, Thumbprint=thumbprint),
        call("Get-HybridmailHost", "after", properties=["ComputerName"]),
    ))
    good_call, bad_call, after = response["calls"]
    assert good_call == {"id": "good", "ok": True, "objects": []}
    assert bad_call["ok"] is True and bad_call["guard_failed"] is True
    assert bad_call["objects"] == [{"Services": "IMAP, POP, IIS, SMTP"}]
    assert after["ok"] is True  # Get-* still run after an abort


def test_guard_compares_multisets_of_canonical_rows(ex01):
    objects = _certs(ex01, "Thumbprint", "IsSelfSigned", "PublicKeySize", "CertificateDomains")
    expect = [
        {"Thumbprint": o["Thumbprint"], "IsSelfSigned": "true" if o["IsSelfSigned"] else "false",
         "PublicKeySize": str(o["PublicKeySize"]), "CertificateDomains": "\n".join(o["CertificateDomains"])}
        for o in reversed(objects)
    ]
    response = ex01.handle_request(request(call("Get-ExchangeCertificate", expect=expect)))
    assert "guard_failed" not in response["calls"][0]
    response = ex01.handle_request(request(call("Get-ExchangeCertificate", expect=expect[:-1])))
    assert response["calls"][0]["guard_failed"] is True
    empty = ex01.handle_request(request(call("Get-HybridConfiguration", expect=[])))
    assert empty["calls"][0]["guard_failed"] is True  # there is a hybrid configuration


def test_failed_guard_aborts_mutations_but_not_reads(ex01):
    internal = _by_subject_part(ex01, "Issuing CA")
    response = ex01.handle_request(request(
        call("Get-ExchangeCertificate", "guard", expect=[{"Services": "SMTP"}], Thumbprint=internal["Thumbprint"]),
        call("Remove-ExchangeCertificate", "remove", Thumbprint=internal["Thumbprint"], Confirm=False),
        call("Get-ExchangeCertificate", "verify", properties=["Thumbprint"], Thumbprint=internal["Thumbprint"]),
        read_only=False,
    ))
    guard, remove, verify = response["calls"]
    assert guard["guard_failed"] is True
    assert remove == {"id": "remove", "ok": False, "skipped": True}
    assert verify["ok"] is True
    assert ex01.mutations == []


def test_guard_call_error_aborts(ex01):
    response = ex01.handle_request(request(
        call("Get-ExchangeCertificate", "guard", expect=[], Thumbprint="00" * 20),
        call("Set-SendConnector", "set", Identity="Outbound to Office 365", TlsCertificateName=None),
        read_only=False,
    ))
    assert response["calls"][0]["ok"] is False
    assert response["calls"][1]["skipped"] is True


def test_first_failed_mutation_aborts_later_mutations(ex01, fleet):
    internal = _by_subject_part(ex01, "Issuing CA")
    response = ex01.handle_request(request(
        call("Remove-ExchangeCertificate", "needs-confirm", Thumbprint=internal["Thumbprint"]),
        call("Set-SendConnector", "pin", Identity="Outbound to Office 365", TlsCertificateName=None),
        call("Get-SendConnector", "read", properties=["Name"]),
        call("Enable-ExchangeCertificate", "enable", Thumbprint=internal["Thumbprint"], Services="IMAP"),
        read_only=False,
    ))
    first, second, read, fourth = response["calls"]
    assert first["ok"] is False and "NonInteractive" in first["error"]["message"]
    assert second["skipped"] is True and fourth["skipped"] is True
    assert read["ok"] is True
    assert [m["result"] for m in ex01.mutations] == ["error"]


def test_mutations_are_logged(ex01):
    internal = _by_subject_part(ex01, "Issuing CA")
    ex01.handle_request(request(call("Enable-ExchangeCertificate", Thumbprint=internal["Thumbprint"],
                                     Services="IMAP, POP", Server=COMPUTERNAME)))
    entry = ex01.mutations[-1]
    assert entry["cmdlet"] == "Enable-ExchangeCertificate" and entry["result"] == "ok"
    assert entry["parameters"] == {"Thumbprint": internal["Thumbprint"], "Services": "IMAP, POP", "Server": "EX01"}
    assert entry["changes"] and entry["time"].endswith("Z")


def test_what_if_changes_nothing(ex01):
    internal = _by_subject_part(ex01, "Issuing CA")
    response = ex01.handle_request(request(call("Remove-ExchangeCertificate", Thumbprint=internal["Thumbprint"],
                                                WhatIf=True)))
    assert response["calls"][0]["ok"] is True
    assert internal["Thumbprint"] in ex01.certificates
    assert ex01.mutations[-1]["result"] == "whatif"


# ------------------------------------------------------------------------------- faults


def test_fault_injection_after_and_times(ex01):
    ex01.inject_cmdlet_fault("Get-ExchangeServer", "AD is down", after=1, times=2)
    results = [ex01.handle_request(request(call("Get-ExchangeServer")))["calls"][0] for _attempt in range(4)]
    assert [r["ok"] for r in results] == [True, False, False, True]
    assert results[1]["error"]["message"] == "AD is down"
    assert results[1]["error"]["type"] == "Microsoft.Exchange.Data.Directory.ADTransientException"


def test_fault_until_cleared_and_mutation_fault_aborts(ex01):
    internal = _by_subject_part(ex01, "Issuing CA")
    ex01.inject_cmdlet_fault("enable-exchangecertificate", times=0)
    for _attempt in range(3):
        response = ex01.handle_request(request(
            call("Enable-ExchangeCertificate", Thumbprint=internal["Thumbprint"], Services="IMAP"),
            call("Set-SendConnector", Identity="Outbound to Office 365", TlsCertificateName=None),
        ))
        assert response["calls"][0]["ok"] is False and response["calls"][1]["skipped"] is True
    ex01.clear_faults()
    response = ex01.handle_request(request(call("Enable-ExchangeCertificate", Thumbprint=internal["Thumbprint"],
                                                Services="IMAP")))
    assert response["calls"][0]["ok"] is True


def test_status_reports_faults_and_counts(ex01):
    ex01.inject_cmdlet_fault("Get-Queue", after=0, times=1)
    ex01.handle_request(request(call("Get-Queue")))
    status = ex01.status()
    assert status["cmdlet_calls"]["Get-Queue"] == 1
    assert status["faults"][0]["fired"] == 1
    json.dumps(status)


# -------------------------------------------------------------------------- concurrency


def test_thread_safe_requests(fleet):
    server = fleet.servers["EX02"]
    errors = []

    def worker():
        try:
            for _round in range(20):
                response = server.handle_request(request(call("Get-ExchangeCertificate", properties=["Thumbprint"]),
                                                         call("Get-Queue", properties=["Status"])))
                assert all(c["ok"] for c in response["calls"])
                server.status()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _thread in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert server.call_counts["Get-Queue"] == 120


def test_contract_module_is_the_collections(ex01):
    assert "Get-HybridmailCertificateChain" in runner_contract.ALLOWED_CMDLETS


# ------------------------------------------------- what the runner would do with each request


def test_a_parameter_the_cmdlet_does_not_have_is_rejected(ex01):
    """PowerShell's binder refuses it (NamedParameterNotFound), before the cmdlet runs or changes anything."""
    thumbprint = _certs(ex01, "Thumbprint")[0]["Thumbprint"]
    response = ex01.handle_request(request(
        call("Enable-ExchangeCertificate", "bogus", Thumbprint=thumbprint, Services="IMAP", RemoveServices="SMTP"),
        call("Get-ExchangeCertificate", "read", properties=["Services"], Thumbprint=thumbprint),
        read_only=False,
    ))
    bogus, read = response["calls"]
    assert bogus["ok"] is False
    assert bogus["error"] == {
        "type": "System.Management.Automation.ParameterBindingException", "category": "InvalidArgument",
        "message": "A parameter cannot be found that matches parameter name 'RemoveServices'.",
        "fqid": "NamedParameterNotFound,Microsoft.Exchange.Management.SystemConfigurationTasks.EnableExchangeCertificate",
    }
    assert read["objects"] == [{"Services": "IMAP, POP, IIS, SMTP"}]  # unchanged
    assert [m["result"] for m in ex01.mutations] == ["error"]


def test_the_lab_emulates_every_allow_listed_cmdlet(ex01):
    # An allow-listed cmdlet the lab did not know would answer CommandNotFoundException, so a test
    # through it would prove nothing about the collection's use of it.
    from tests.lab.exchange import cmdlets
    assert set(_runner.ALLOWED_CMDLETS) <= set(cmdlets.REGISTRY)
    response = ex01.handle_request(request(
        call("Get-ManagementRole", "role", properties=["Name"]),
        call("Get-HybridmailHost", "host", properties=["ComputerName"]),
    ))
    assert all(entry["ok"] for entry in response["calls"]), response


def test_typed_bytes_and_secure_string_values(ex01):
    from tests.lab.exchange import runner
    from tests.lab.exchange.calls import file_data, secure_string

    resolved = runner._resolve_typed({"FileData": file_data(b"\x30\x82\x00\xff"), "Password": secure_string("P@ss")}, ex01)
    assert resolved["FileData"] == b"\x30\x82\x00\xff"
    assert isinstance(resolved["Password"], runner.SecureString) and resolved["Password"].reveal() == "P@ss"
    assert str(resolved["Password"]) == "System.Security.SecureString"  # what PowerShell prints for one
    # bound to a [string] parameter, a SecureString is its type name, never the secret
    response = ex01.handle_request(request(call("Get-ExchangeCertificate", Thumbprint=secure_string("P@ss"))))
    message = response["calls"][0]["error"]["message"]
    assert "SYSTEM.SECURITY.SECURESTRING" in message and "P@ss" not in message
    # a byte[] does not bind to a [string] parameter
    response = ex01.handle_request(request(call("Get-ExchangeCertificate", Thumbprint=file_data(b"\x01"))))
    assert response["calls"][0]["error"]["fqid"].startswith("CannotConvertArgument,")


def test_runner_reports_load_ms(fleet):
    server = fleet.servers["EX01"]
    assert server.handle_request(request(call("Get-HybridmailHost")))["runner"]["load_ms"] == 0
    runner_info = server.handle_request(request(call("Get-ExchangeServer")))["runner"]
    assert runner_info["load"] == "snapin" and runner_info["load_ms"] > 0
    assert runner_info["elapsed_ms"] >= runner_info["load_ms"]
    assert set(runner_info) == {"powershell", "load", "load_ms", "elapsed_ms"}


def test_host_reports_edition_language_mode_and_user(fleet):
    host = ["ComputerName", "PSEdition", "LanguageMode", "UserName"]
    ex01 = fleet.servers["EX01"]
    response = ex01.handle_request(request(call("Get-HybridmailHost", properties=host)), user="Administrator")
    assert response["calls"][0]["objects"] == [
        {"ComputerName": "EX01", "PSEdition": "Desktop", "LanguageMode": "FullLanguage", "UserName": "CONTOSO\\Administrator"}]
    response = ex01.handle_request(request(call("Get-HybridmailHost", properties=["UserName"])), user="FABRIKAM\\svc-audit")
    assert response["calls"][0]["objects"] == [{"UserName": "FABRIKAM\\svc-audit"}]
    edge = Fleet.from_dict({"servers": [{"name": "EDGE01", "role": "edge"}]}).servers["EDGE01"]
    response = edge.handle_request(request(call("Get-HybridmailHost", properties=["UserName"])), user="Administrator")
    assert response["calls"][0]["objects"] == [{"UserName": "EDGE01\\Administrator"}]  # a workgroup server


def _kb_fleet(auto):
    import yaml

    with open(os.path.join(FLEETS, "kb2888788.yml"), encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    for server in data["servers"]:
        server["session"] = dict(server.get("session") or {}, auto=auto)
    return Fleet.from_dict(data)


def test_remote_exchange_session_hands_the_runner_deserialized_shapes():
    """Over remote PowerShell the runner sees names for enums, dates with the server's offset and RawData as
    text (wire contract, "Value conversion"); its one converter gives the same JSON as the snap-in shape."""
    local, remote = _kb_fleet("snapin").servers["EX01"], _kb_fleet("remote_exchange").servers["EX01"]
    raw = remote.session_shape("remote_exchange", [remote.certificate_object(c) for c in remote.certificates.values()])
    assert all(isinstance(obj["RawData"], str) and isinstance(obj["Services"], str) for obj in raw)
    assert all(obj["NotAfter"].utcoffset() == datetime.timedelta(hours=-5) for obj in raw)
    properties = ["Thumbprint", "Services", "Status", "RootCAType", "NotBefore", "NotAfter", "RawData", "CertificateDomains"]
    answers = [server.handle_request(request(call("Get-ExchangeCertificate", properties=properties, Server=COMPUTERNAME),
                                             call("Get-SendConnector", properties=["TlsCertificateName", "AddressSpaces"])))
               for server in (local, remote)]
    assert [answer["runner"]["load"] for answer in answers] == ["snapin", "remote_exchange"]
    assert answers[0]["calls"] == answers[1]["calls"]
    assert answers[1]["runner"]["load_ms"] > answers[0]["runner"]["load_ms"]


def test_fleet_rejects_bad_language_mode_and_session():
    from tests.lab.exchange.fleet import FleetError

    with pytest.raises(FleetError, match="language_mode must be one of"):
        Fleet.from_dict({"servers": [{"name": "EX01", "language_mode": "Constrained"}]})
    with pytest.raises(FleetError, match="session.auto must be snapin or remote_exchange"):
        Fleet.from_dict({"servers": [{"name": "EX01", "session": {"auto": "e2010"}}]})

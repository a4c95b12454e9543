"""Import-ExchangeCertificate, Set-HybridConfiguration and the renewal fleet (issue 11).

Sources: office-docs-powershell Import-ExchangeCertificate.md (-FileData byte[], -Password SecureString,
-PrivateKeyExportable; an imported certificate has no services until Enable-ExchangeCertificate),
Set-HybridConfiguration.md (-TlsCertificateName, organisation-wide), exchange-facts.md ("Which certificate
transport uses toward Exchange Online": a TlsCertificateName that matches nothing fails with 454 4.7.5).
"""

from __future__ import annotations

import base64
import json
import os

import pytest

from tests.lab.exchange.calls import COMPUTERNAME, call, request
from tests.lab.exchange.fleet import Fleet, FleetError

FLEETS = os.path.join(os.path.dirname(__file__), "..", "..", "lab", "fleets")
PASSWORD = "Renew-2026-Pw!"


def renewal():
    return Fleet.load(os.path.join(FLEETS, "renewal.yml"))


def pfx_bytes(data: bytes) -> dict:
    return {"__hybridmail": "bytes", "value": base64.b64encode(data).decode("ascii")}


def secure(text: str) -> dict:
    return {"__hybridmail": "secure_string", "value": text}


def import_call(data: bytes, password: str | None = PASSWORD, **extra):
    parameters = dict(FileData=pfx_bytes(data), Server=COMPUTERNAME, **extra)
    if password is not None:
        parameters["Password"] = secure(password)
    return call("Import-ExchangeCertificate", "import", **parameters)


def run(server, *calls):
    return server.handle_request(request(*calls))["calls"]


def test_import_adds_the_certificate_with_no_services_and_its_intermediate():
    fleet = renewal()
    server = fleet.servers["EX02"]
    renewed = fleet.issued("renewed")
    assert renewed.thumbprint not in server.certificates
    result = run(server, import_call(fleet.pfx("renewed", PASSWORD), PrivateKeyExportable=False),
                 call("Get-ExchangeCertificate", properties=["Thumbprint", "Services", "HasPrivateKey", "FriendlyName"],
                      Server=COMPUTERNAME, Thumbprint=renewed.thumbprint),
                 call("Get-HybridmailCertificateChain", "chain", properties=["Thumbprint", "ChainThumbprints", "ChainStatus"]))
    assert result[0]["ok"], result
    assert result[1]["objects"] == [{"Thumbprint": renewed.thumbprint, "Services": "None", "HasPrivateKey": True,
                                     "FriendlyName": "Contoso public 2026"}]
    chain = next(c for c in result[2]["objects"] if c["Thumbprint"] == renewed.thumbprint)
    assert chain["ChainStatus"] == [] and len(chain["ChainThumbprints"]) == 3
    # The password never reaches the mutation log; FileData is logged as its length.
    logged = server.mutations[-1]
    assert logged["parameters"]["Password"] == "System.Security.SecureString"
    assert logged["parameters"]["FileData"].startswith("byte[")
    assert PASSWORD not in json.dumps(server.status())


def test_a_pfx_without_its_intermediates_leaves_a_partial_chain():
    fleet = renewal()
    server = fleet.servers["EX01"]
    renewed = fleet.issued("renewed")
    assert run(server, import_call(fleet.pfx("renewed", PASSWORD, include_chain=False)))[0]["ok"]
    chain = next(c for c in run(server, call("Get-HybridmailCertificateChain", properties=["Thumbprint", "ChainStatus"]))[0]["objects"]
                 if c["Thumbprint"] == renewed.thumbprint)
    assert chain["ChainStatus"] == ["PartialChain"]


@pytest.mark.parametrize("case, fqid_key, text", [
    ("duplicate", "0D12B85F", "Cannot import certificate. A certificate with the thumbprint"),
    ("password", None, "The specified network password is not correct."),
    ("no_key", None, "(reason: PrivateKeyMissing)"),
])
def test_import_errors_are_shaped_like_exchange_s(case, fqid_key, text):
    fleet = renewal()
    server = fleet.servers["EX01"]
    if case == "duplicate":
        data, password = fleet.pfx("public_2025", PASSWORD), PASSWORD
    elif case == "password":
        data, password = fleet.pfx("renewed", PASSWORD), "wrong"
    else:
        data, password = fleet.pfx("renewed", PASSWORD, include_key=False), PASSWORD
    before = set(server.certificates)
    entry = run(server, import_call(data, password))[0]
    assert entry["ok"] is False
    error = entry["error"]
    assert text in error["message"] and error["message"].startswith("A special Rpc error occurs on server EX01: ")
    assert error["fqid"].endswith(",Microsoft.Exchange.Management.SystemConfigurationTasks.ImportExchangeCertificate")
    if fqid_key:
        assert error["fqid"].startswith(fqid_key)
    assert set(server.certificates) == before


def test_password_must_be_a_secure_string_and_file_data_bytes():
    fleet = renewal()
    server = fleet.servers["EX01"]
    data = fleet.pfx("renewed", PASSWORD)
    plain = run(server, call("Import-ExchangeCertificate", FileData=pfx_bytes(data), Password=PASSWORD))[0]
    assert "System.Security.SecureString" in plain["error"]["message"]
    text = run(server, call("Import-ExchangeCertificate", FileData="not bytes", Password=secure(PASSWORD)))[0]
    assert "System.Byte[]" in text["error"]["message"]
    bad = server.handle_request(request(call("Import-ExchangeCertificate", FileData={"__hybridmail": "bytes", "value": "!!"})))
    assert bad["error"]["type"] == "BadRequest"


def test_set_hybrid_configuration_is_organisation_wide_and_refused_on_edge():
    fleet = Fleet.load(os.path.join(FLEETS, "mixed.yml"))
    name = "<I>CN=Hybridmail Lab Public TLS CA 2026, O=Hybridmail Lab Trust Services, C=US<S>CN=mail.contoso.com"
    assert run(fleet.servers["EX01"], call("Set-HybridConfiguration", TlsCertificateName=name, Confirm=False))[0]["ok"]
    seen = run(fleet.servers["EX02"], call("Get-HybridConfiguration", properties=["TlsCertificateName"]))[0]["objects"]
    assert seen == [{"TlsCertificateName": name}]
    edge = run(fleet.servers["EDGE01"], call("Set-HybridConfiguration", TlsCertificateName=name))[0]
    assert edge["error"]["fqid"] == "CommandNotFoundException"
    bad = run(fleet.servers["EX01"], call("Set-HybridConfiguration", TlsCertificateName="mail.contoso.com"))[0]
    assert "<I>issuer<S>subject" in bad["error"]["message"]


def test_renewal_old_pin_breaks_once_the_old_certificate_is_gone_and_new_pins_restore_mail_flow():
    fleet = renewal()
    ex01, ex02 = fleet.servers["EX01"], fleet.servers["EX02"]
    old, new = fleet.issued("public_2025"), fleet.issued("renewed")
    for server in (ex01, ex02):
        assert run(server, import_call(fleet.pfx("renewed", PASSWORD)),
                   call("Enable-ExchangeCertificate", "smtp", Thumbprint=new.thumbprint, Services="SMTP", Server=COMPUTERNAME,
                        Force=True, Confirm=False))[1]["ok"]
    # The old pin still selects the old certificate: mail flows with it.
    assert ex01.status()["mail_flow"]["outbound_certificate"] == old.thumbprint
    # Remove it (after moving the internal transport certificate back is not needed: the lab's -Force
    # made the new one internal; the old one is not) while the connector still names it: 454 4.7.5.
    connector = fleet.organization.send_connectors[0]
    connector.tls_certificate_name = None
    for server in (ex01, ex02):
        server.web_thumbprint = None
        assert run(server, call("Remove-ExchangeCertificate", Thumbprint=old.thumbprint, Server=COMPUTERNAME, Confirm=False))[0]["ok"]
    connector.tls_certificate_name = "<I>%s<S>%s" % (old.issuer, old.subject)
    status = ex02.status()["mail_flow"]
    assert status["delivered"] is False and status["last_error"].startswith("454 4.7.5")
    new_name = "<I>%s<S>%s" % (new.issuer, new.subject)
    assert run(ex01, call("Set-SendConnector", Identity=connector.name, TlsCertificateName=new_name, Confirm=False))[0]["ok"]
    for server in (ex01, ex02):
        flow = server.status()["mail_flow"]
        assert flow["delivered"] is True and flow["outbound_certificate"] == new.thumbprint


def test_pfx_of_an_unknown_certificate_is_a_fleet_error():
    with pytest.raises(FleetError, match="unknown certificate id"):
        renewal().pfx("nope", PASSWORD)

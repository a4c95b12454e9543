"""Semantics and errors of the emulated cmdlets (exchange-facts.md)."""

from __future__ import annotations

import os

import pytest

from tests.lab.exchange import services as svc
from tests.lab.exchange.calls import COMPUTERNAME, call, days_ago, request
from tests.lab.exchange.fleet import Fleet

FLEETS = os.path.join(os.path.dirname(__file__), "..", "..", "lab", "fleets")
NONINTERACTIVE = "PowerShell is in NonInteractive mode. Read and Prompt functionality is not available."


def load(name):
    return Fleet.load(os.path.join(FLEETS, name + ".yml"))


def run(server, *calls):
    return server.handle_request(request(*calls))["calls"]


def one(server, entry):
    return run(server, entry)[0]


def certs(server):
    return {c["Thumbprint"]: c for c in one(server, call(
        "Get-ExchangeCertificate", properties=["Thumbprint", "Subject", "Issuer", "Services", "Status", "RootCAType",
                                               "FriendlyName", "HasPrivateKey"], Server=COMPUTERNAME))["objects"]}


def find(server, source):
    return [c for c in server.certificates.values() if c.source == source][0]


def services(server, thumbprint):
    return certs(server)[thumbprint]["Services"]


@pytest.fixture
def kb():
    return load("kb2888788")


# --------------------------------------------------------------------- services flags


@pytest.mark.parametrize(
    "value, flags",
    [
        ("IIS,POP", svc.IIS | svc.POP),
        ("IMAP, POP", svc.IMAP | svc.POP),
        (["IMAP", "pop", "smtp"], svc.IMAP | svc.POP | svc.SMTP),
        ("None", 0),
        (24, svc.IIS | svc.SMTP),
        ("Federation, UMCallRouter, UM", svc.FEDERATION | svc.UMCALLROUTER | svc.UM),
    ],
)
def test_parse_services(value, flags):
    assert svc.parse_services(value) == flags


def test_format_services():
    assert svc.format_services(svc.SMTP | svc.IIS | svc.POP | svc.IMAP) == "IMAP, POP, IIS, SMTP"
    assert svc.format_services(0) == "None"
    assert svc.format_services(127) == "IMAP, POP, UM, IIS, SMTP, Federation, UMCallRouter"


@pytest.mark.parametrize("value", ["IIS,WWW", "", [], True, 128])
def test_parse_services_rejects(value):
    with pytest.raises(svc.ServicesParseError):
        svc.parse_services(value)


# ------------------------------------------------------------------ servers, certificates


def test_get_exchange_server(kb):
    objects = one(kb.servers["EX01"], call("Get-ExchangeServer", properties=["Name", "ServerRole", "IsEdgeServer"]))
    assert [o["Name"] for o in objects["objects"]] == ["EX01", "EX02"]
    missing = one(kb.servers["EX01"], call("Get-ExchangeServer", Identity="EX99"))
    assert missing["error"]["type"] == "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException"
    assert "EX99" in missing["error"]["message"]


def test_get_exchange_certificate_shapes(kb):
    server = kb.servers["EX01"]
    found = certs(server)
    public, internal = find(server, "public"), find(server, "internal")
    assert found[public.thumbprint]["Subject"] == "CN=mail.contoso.com, O=Contoso Ltd, L=Redmond, S=Washington, C=US"
    assert found[public.thumbprint]["Issuer"].startswith("CN=Hybridmail Lab Public TLS CA 2025")
    assert (found[public.thumbprint]["Status"], found[public.thumbprint]["RootCAType"]) == ("Valid", "ThirdParty")
    assert (found[internal.thumbprint]["Status"], found[internal.thumbprint]["RootCAType"]) == ("Valid", "GroupPolicy")
    auth = [c for c in found.values() if c["Subject"] == "CN=Microsoft Exchange Server Auth Certificate"][0]
    assert (auth["Services"], auth["Status"], auth["RootCAType"]) == ("SMTP", "Valid", "None")
    own = [c for c in found.values() if c["Subject"] == "CN=EX01"][0]
    assert (own["Services"], own["RootCAType"], own["FriendlyName"]) == ("IMAP, POP, IIS, SMTP", "Registry",
                                                                         "Microsoft Exchange")


def test_get_exchange_certificate_by_thumbprint_and_other_server(kb):
    server = kb.servers["EX01"]
    public = find(server, "public")
    result = one(server, call("Get-ExchangeCertificate", properties=["Thumbprint"], Thumbprint=public.thumbprint,
                              Server="ex02.contoso.com"))
    assert result["objects"] == [{"Thumbprint": public.thumbprint}]  # the same PFX is on EX02


def test_get_exchange_certificate_unknown_thumbprint(kb):
    result = one(kb.servers["EX01"], call("Get-ExchangeCertificate", Thumbprint="AB" * 20))
    assert result["ok"] is False
    error = result["error"]
    assert error["message"] == "A special Rpc error occurs on server EX01: The certificate with thumbprint %s was " \
        "not found." % ("AB" * 20)
    assert error["category"] == "ObjectNotFound"
    assert error["fqid"].endswith(",Microsoft.Exchange.Management.SystemConfigurationTasks.GetExchangeCertificate")


def test_enable_is_additive_by_default(kb):
    server = kb.servers["EX01"]
    internal = find(server, "internal")
    result = one(server, call("Enable-ExchangeCertificate", Thumbprint=internal.thumbprint, Services="IMAP,POP"))
    assert result == {"id": "Enable-ExchangeCertificate", "ok": True, "objects": []}
    assert services(server, internal.thumbprint) == "IMAP, POP, SMTP"  # SMTP cannot be dropped


def test_enable_replace_behaviour_drops_smtp(kb):
    server = kb.servers["EX02"]
    internal = find(server, "internal")
    assert services(server, internal.thumbprint) == "IMAP, POP, IIS, SMTP"
    one(server, call("Enable-ExchangeCertificate", Thumbprint=internal.thumbprint, Services="IIS,POP,IMAP"))
    assert services(server, internal.thumbprint) == "IMAP, POP, IIS"


@pytest.mark.parametrize("value", ["IIS,POP,IMAP", "IMAP, POP, IIS", ["IMAP", "POP", "IIS"], 11])
def test_enable_accepts_service_forms(kb, value):
    server = kb.servers["EX02"]
    internal = find(server, "internal")
    assert one(server, call("Enable-ExchangeCertificate", Thumbprint=internal.thumbprint, Services=value))["ok"]
    assert services(server, internal.thumbprint) == "IMAP, POP, IIS"


def test_enable_rejects_unknown_service(kb):
    server = kb.servers["EX01"]
    result = one(server, call("Enable-ExchangeCertificate", Thumbprint=find(server, "internal").thumbprint,
                              Services="IIS,WWW"))
    assert result["error"]["fqid"].startswith("CannotConvertArgumentNoMessage,")
    assert "WWW" in result["error"]["message"] and "UMCallRouter" in result["error"]["message"]


def test_enable_smtp_without_force_prompts(kb):
    server = kb.servers["EX01"]
    public = find(server, "public")
    result = one(server, call("Enable-ExchangeCertificate", Thumbprint=public.thumbprint, Services="SMTP"))
    assert result["error"]["type"] == "System.Management.Automation.PSInvalidOperationException"
    assert result["error"]["message"] == NONINTERACTIVE
    assert server.mutations[-1]["result"] == "error"


def test_enable_smtp_confirm_false_keeps_internal_transport(kb):
    server = kb.servers["EX01"]
    internal_transport = server.internal_transport_thumbprint
    public = find(server, "public")
    assert one(server, call("Enable-ExchangeCertificate", Thumbprint=public.thumbprint, Services="SMTP",
                            Confirm=False))["ok"]
    assert server.internal_transport_thumbprint == internal_transport


def test_enable_smtp_force_replaces_internal_transport(kb):
    server = kb.servers["EX01"]
    old = server.internal_transport_thumbprint
    public = find(server, "public")
    assert one(server, call("Enable-ExchangeCertificate", Thumbprint=public.thumbprint, Services="SMTP",
                            Force=True))["ok"]
    transport = one(server, call("Get-TransportService", properties=["InternalTransportCertificateThumbprint"],
                                 Identity=COMPUTERNAME))
    assert transport["objects"] == [{"InternalTransportCertificateThumbprint": public.thumbprint}]
    # Microsoft's own scripts restore the previous one the same way.
    assert one(server, call("Enable-ExchangeCertificate", Thumbprint=old, Services="SMTP", Force=True))["ok"]
    assert server.internal_transport_thumbprint == old


def test_enable_smtp_on_internal_transport_needs_no_prompt(kb):
    server = kb.servers["EX01"]
    assert one(server, call("Enable-ExchangeCertificate", Thumbprint=server.internal_transport_thumbprint,
                            Services="SMTP"))["ok"]


def test_enable_smtp_without_private_key_fails():
    fleet = Fleet.from_dict({
        "certificates": {"nokey": {"subject": "CN=mail.contoso.com", "issuer": "public_ca",
                                   "sans": ["mail.contoso.com"]}},
        "servers": [{"name": "EX01", "certificates": [{"id": "nokey", "has_private_key": False}]}],
    })
    server = fleet.servers["EX01"]
    thumbprint = find(server, "nokey").thumbprint
    result = one(server, call("Enable-ExchangeCertificate", Thumbprint=thumbprint, Services="SMTP", Force=True))
    assert result["ok"] is False and "private key" in result["error"]["message"]
    assert certs(server)[thumbprint]["HasPrivateKey"] is False


def test_enable_iis_moves_the_web_certificate(kb):
    server = kb.servers["EX02"]
    public, internal = find(server, "public"), find(server, "internal")
    assert server.web_thumbprint == internal.thumbprint
    one(server, call("Enable-ExchangeCertificate", Thumbprint=public.thumbprint, Services="IIS"))
    assert services(server, public.thumbprint) == "IIS"  # EX02 replaces: SMTP is gone, IIS added
    assert services(server, internal.thumbprint) == "IMAP, POP, SMTP"  # lost IIS: one Default Web Site binding
    assert server.status()["web_certificate"] == public.thumbprint


def test_enable_unknown_thumbprint(kb):
    result = one(kb.servers["EX01"], call("Enable-ExchangeCertificate", Thumbprint="12" * 20, Services="IMAP"))
    assert "was not found" in result["error"]["message"]


def test_remove_needs_confirm_false(kb):
    server = kb.servers["EX01"]
    internal = find(server, "internal")
    result = one(server, call("Remove-ExchangeCertificate", Thumbprint=internal.thumbprint))
    assert result["error"]["message"] == NONINTERACTIVE
    assert internal.thumbprint in server.certificates
    assert one(server, call("Remove-ExchangeCertificate", Thumbprint=internal.thumbprint, Confirm=False))["ok"]
    assert internal.thumbprint not in server.certificates
    assert internal.thumbprint not in certs(server)


def test_remove_refuses_internal_transport_certificate(kb):
    server = kb.servers["EX01"]
    result = one(server, call("Remove-ExchangeCertificate", Thumbprint=server.internal_transport_thumbprint,
                              Confirm=False))
    assert result["ok"] is False
    assert "The internal transport certificate cannot be removed" in result["error"]["message"]
    assert result["error"]["message"].startswith("A special Rpc error occurs on server EX01: ")


def test_remove_refuses_certificate_tagged_by_send_connector():
    fleet = load("healthy")
    server = fleet.servers["EX01"]
    public = find(server, "public")
    result = one(server, call("Remove-ExchangeCertificate", Thumbprint=public.thumbprint, Confirm=False))
    assert "These certificates are tagged with following Send Connectors : Outbound to Office 365" in \
        result["error"]["message"]
    assert public.thumbprint in server.certificates


def test_remove_ignores_receive_connector_names_but_status_shows_it(kb):
    server = kb.servers["EX01"]
    public = find(server, "public")  # named by EX01's Default Frontend (HCW), not by the send connector
    assert server.status()["receive_tls"] == [{
        "connector": "EX01\\Default Frontend EX01", "certificate": public.thumbprint,
        "tls_certificate_name": "<I>%s<S>%s" % (public.issued.issuer, public.issued.subject)}]
    assert one(server, call("Remove-ExchangeCertificate", Thumbprint=public.thumbprint, Confirm=False))["ok"]
    assert server.status()["receive_tls"][0]["certificate"] is None


def test_remove_web_certificate_leaves_site_without_certificate(kb):
    server = kb.servers["EX01"]
    public = find(server, "public")  # the connector does not name it in this fleet
    assert one(server, call("Remove-ExchangeCertificate", Thumbprint=public.thumbprint, Confirm=False))["ok"]
    assert server.status()["web_certificate"] is None


# ------------------------------------------------------------------------ connectors


def test_get_send_connector(kb):
    objects = one(kb.servers["EX02"], call("Get-SendConnector", properties=[
        "Identity", "AddressSpaces", "SourceTransportServers", "CloudServicesMailEnabled", "RequireTLS",
        "TlsAuthLevel", "TlsDomain", "TlsCertificateName", "Fqdn", "DNSRoutingEnabled", "SmartHosts"]))["objects"]
    assert objects == [{
        "Identity": "Outbound to Office 365", "AddressSpaces": ["SMTP:contoso.mail.onmicrosoft.com;1"],
        "SourceTransportServers": ["EX01", "EX02"], "CloudServicesMailEnabled": True, "RequireTLS": True,
        "TlsAuthLevel": "DomainValidation", "TlsDomain": "mail.protection.outlook.com", "TlsCertificateName": None,
        "Fqdn": "mail.contoso.com", "DNSRoutingEnabled": True, "SmartHosts": [],
    }]


def test_set_send_connector_normalises_and_is_organisation_wide(kb):
    ex01, ex02 = kb.servers["EX01"], kb.servers["EX02"]
    public = find(ex01, "public")
    given = "<I>CN=Hybridmail Lab Public TLS CA 2025,O=Hybridmail Lab Trust Services,C=US" \
            "<S>CN=mail.contoso.com,O=Contoso Ltd,L=Redmond,S=Washington,C=US"
    assert one(ex01, call("Set-SendConnector", Identity="outbound to office 365", TlsCertificateName=given))["ok"]
    seen = one(ex02, call("Get-SendConnector", properties=["TlsCertificateName"]))["objects"][0]
    assert seen["TlsCertificateName"] == "<I>%s<S>%s" % (public.issued.issuer, public.issued.subject)
    assert one(ex01, call("Set-SendConnector", Identity="Outbound to Office 365", TlsCertificateName=None))["ok"]
    assert kb.organization.send_connectors[0].tls_certificate_name is None


@pytest.mark.parametrize("value", ["CN=mail.contoso.com", "<I><S>CN=x", "<I>CN=x", "<S>CN=x<I>CN=y",
                                   "<I>nonsense<S>CN=x"])
def test_set_send_connector_rejects_bad_tls_name(kb, value):
    result = one(kb.servers["EX01"], call("Set-SendConnector", Identity="Outbound to Office 365",
                                          TlsCertificateName=value))
    assert result["ok"] is False
    assert result["error"]["fqid"].startswith("CannotConvertArgumentNoMessage,")
    assert "SmtpX509Identifier" in result["error"]["message"]


def test_set_send_connector_unknown_identity(kb):
    result = one(kb.servers["EX01"], call("Set-SendConnector", Identity="Nope", TlsCertificateName=None))
    assert "couldn't be found" in result["error"]["message"]


def test_receive_connectors(kb):
    server = kb.servers["EX01"]
    objects = one(server, call("Get-ReceiveConnector", properties=["Identity", "TransportRole", "Bindings",
                                                                   "TlsCertificateName", "TlsDomainCapabilities"],
                               Server=COMPUTERNAME))["objects"]
    assert [o["Identity"] for o in objects] == [
        "EX01\\Default EX01", "EX01\\Client Proxy EX01", "EX01\\Default Frontend EX01",
        "EX01\\Outbound Proxy Frontend EX01", "EX01\\Client Frontend EX01",
    ]
    frontend = objects[2]
    assert frontend["TlsDomainCapabilities"] == ["mail.protection.outlook.com:AcceptCloudServicesMail"]
    assert frontend["TlsCertificateName"].startswith("<I>CN=Hybridmail Lab Public TLS CA 2025")
    assert frontend["Bindings"] == ["0.0.0.0:25", "[::]:25"]
    everything = one(server, call("Get-ReceiveConnector", properties=["Identity"]))["objects"]
    assert len(everything) == 10  # both Mailbox servers


def test_set_receive_connector(kb):
    server = kb.servers["EX01"]
    internal = find(server, "internal")
    name = "<I>%s<S>%s" % (internal.issued.issuer, internal.issued.subject)
    assert one(server, call("Set-ReceiveConnector", Identity="EX01\\Default Frontend EX01",
                            TlsCertificateName=name))["ok"]
    assert server.receive_connectors[2].tls_certificate_name == name
    assert one(server, call("Set-ReceiveConnector", Identity="Default Frontend EX02", TlsCertificateName=None))["ok"]
    assert kb.servers["EX02"].receive_connectors[2].tls_certificate_name is None


def test_hybrid_configuration(kb):
    objects = one(kb.servers["EX01"], call("Get-HybridConfiguration", properties=[
        "TlsCertificateName", "SendingTransportServers", "ReceivingTransportServers", "EdgeTransportServers",
        "Domains", "OnPremisesSmartHost", "Features"]))["objects"]
    assert objects[0]["SendingTransportServers"] == ["EX01", "EX02"]
    assert objects[0]["Domains"] == ["contoso.com"] and objects[0]["OnPremisesSmartHost"] == "mail.contoso.com"
    assert "FreeBusy" in objects[0]["Features"]


def test_no_hybrid_configuration_returns_nothing():
    fleet = Fleet.from_dict({"organization": {"hybrid": None}, "servers": [{"name": "EX01"}]})
    assert one(fleet.servers["EX01"], call("Get-HybridConfiguration", properties=["TlsCertificateName"])) == {
        "id": "Get-HybridConfiguration", "ok": True, "objects": []}


def test_edge_server_specifics():
    fleet = load("edge")
    edge = fleet.servers["EDGE01"]
    result = one(edge, call("Get-HybridConfiguration", properties=["TlsCertificateName"]))
    assert result["error"] == {
        "type": "System.Management.Automation.CommandNotFoundException", "category": "ObjectNotFound",
        "message": result["error"]["message"], "fqid": "CommandNotFoundException"}
    assert "'Get-HybridConfiguration' is not recognized" in result["error"]["message"]
    server = one(edge, call("Get-ExchangeServer", properties=["Name", "ServerRole", "IsEdgeServer", "Site"]))
    assert server["objects"] == [{"Name": "EDGE01", "ServerRole": "Edge", "IsEdgeServer": True, "Site": None}]
    assert one(edge, call("Get-SendConnector", properties=["Name"]))["objects"] == [{"Name": "Outbound to Office 365"}]
    receive = one(edge, call("Get-ReceiveConnector", properties=["Identity", "TlsDomainCapabilities"],
                             Server=COMPUTERNAME))["objects"]
    assert receive == [{"Identity": "EDGE01\\Default internal receive connector EDGE01",
                        "TlsDomainCapabilities": ["mail.protection.outlook.com:AcceptCloudServicesMail"]}]
    assert [c["Services"] for c in certs(edge).values()] == ["SMTP", "SMTP"]  # no IIS, no Auth certificate
    host = one(edge, call("Get-HybridmailHost", properties=["Domain"]))["objects"]
    assert host == [{"Domain": "WORKGROUP"}]
    # Edge does not see the organisation's other servers.
    assert one(edge, call("Get-ExchangeCertificate", Server="EX01"))["ok"] is False


# ------------------------------------------------------------------ events and queues


def test_get_win_event_no_match_error(kb):
    result = one(kb.servers["EX01"], call("Get-WinEvent", FilterHashtable={
        "LogName": "Application", "ProviderName": "MSExchangeTransport", "Id": 9999, "StartTime": days_ago(7)}))
    assert result["error"] == {
        "type": "System.Exception", "category": "ObjectNotFound",
        "message": "No events were found that match the specified selection criteria.",
        "fqid": "NoMatchingEventsFound,Microsoft.PowerShell.Commands.GetWinEventCommand"}


def test_get_win_event_filters_and_order(kb):
    server = kb.servers["EX01"]
    for _attempt in range(3):
        server.status()  # each status() is a delivery attempt, each failure an Event 2004
    everything = one(server, call("Get-WinEvent", properties=["Id", "RecordId", "TimeCreated"],
                                  FilterHashtable={"LogName": "Application", "ProviderName": "MSExchangeTransport"}))
    ids = [e["Id"] for e in everything["objects"]]
    assert 7010 in ids and ids.count(2004) >= 5
    records = [e["RecordId"] for e in everything["objects"]]
    assert records[0] == max(records)  # newest first
    limited = one(server, call("Get-WinEvent", properties=["Id"], MaxEvents=2, FilterHashtable={
        "LogName": "Application", "ProviderName": "MSExchangeTransport", "Id": [2004], "StartTime": days_ago(7)}))
    assert limited["objects"] == [{"Id": 2004}, {"Id": 2004}]
    old = one(server, call("Get-WinEvent", properties=["Id"], FilterHashtable={
        "LogName": "Application", "Id": 2004, "StartTime": days_ago(30)}))
    recent = one(server, call("Get-WinEvent", properties=["Id"], FilterHashtable={
        "LogName": "Application", "Id": 2004, "StartTime": days_ago(7)}))
    assert len(old["objects"]) == len(recent["objects"]) + 1
    bad_key = one(server, call("Get-WinEvent", FilterHashtable={"Source": "x"}))
    assert bad_key["ok"] is False


def test_get_queue(kb):
    objects = one(kb.servers["EX01"], call("Get-Queue", properties=[
        "Identity", "DeliveryType", "NextHopDomain", "NextHopConnector", "Status", "MessageCount", "LastError",
        "LastRetryTime", "NextRetryTime"], Server=COMPUTERNAME))["objects"]
    submission, cloud = objects
    assert submission["NextHopDomain"] == "Submission"
    assert cloud["NextHopDomain"] == "contoso.mail.onmicrosoft.com" and cloud["Status"] == "Retry"
    assert cloud["DeliveryType"] == "DnsConnectorDelivery" and cloud["MessageCount"] >= 37
    assert cloud["NextHopConnector"] == kb.organization.send_connectors[0].guid
    assert cloud["LastRetryTime"].endswith("Z") and cloud["NextRetryTime"] > cloud["LastRetryTime"]

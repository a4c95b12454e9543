"""Mail flow toward Exchange Online: certificate selection, gateway verdicts, queues and Event 2004."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography import x509

from tests.lab.exchange import mailflow
from tests.lab.exchange.calls import COMPUTERNAME, call, days_ago, request
from tests.lab.exchange.fleet import Fleet

FLEETS = os.path.join(os.path.dirname(__file__), "..", "..", "lab", "fleets")
SUBJECT = "CN=mail.contoso.com, O=Contoso Ltd, C=US"


def load(name):
    return Fleet.load(os.path.join(FLEETS, name + ".yml"))


def one(server, entry):
    return server.handle_request(request(entry))["calls"][0]


def find(server, source):
    return [c for c in server.certificates.values() if c.source == source][0]


def events_2004(server):
    return [e for e in server.events if e.event_id == 2004]


def fleet_with(certificates, installs, connector_tls=None, **server):
    """One Mailbox server EX01 sending through a cloud connector (Fqdn mail.contoso.com)."""
    return Fleet.from_dict({
        "organization": {"hybrid": {"tls_certificate": None},
                         "send_connectors": [{"name": "Outbound to Office 365", "cloud": True,
                                              "fqdn": "mail.contoso.com", "tls_certificate": connector_tls}]},
        "certificates": certificates,
        "servers": [dict({"name": "EX01", "certificates": installs}, **server)],
    })


def cert(issuer="public_ca", subject=SUBJECT, sans=("mail.contoso.com",), **extra):
    return dict({"subject": subject, "issuer": issuer, "sans": list(sans)}, **extra)


# ------------------------------------------------------------------------ the incident


def test_kb2888788_at_load():
    fleet = load("kb2888788")
    for name in ("EX01", "EX02"):
        server = fleet.servers[name]
        flow = server.mail_flow
        assert flow["outbound_certificate"] == find(server, "internal").thumbprint
        assert flow["selection"]["rule"] == "Fqdn"
        assert set(flow["selection"]["candidates"]) == {find(server, "internal").thumbprint,
                                                        find(server, "public").thumbprint}
        assert flow["gateway"]["reason"] == "UntrustedRoot" and flow["delivered"] is False
        assert server.queue.status == "Retry"
        assert "454 4.7.0" in server.queue.last_error and "UntrustedRoot" in server.queue.last_error
        event = events_2004(server)[-1]
        assert (event.provider, event.level, event.task) == ("MSExchangeTransport", "Information", "SmtpSend")
        assert event.message.startswith("Send connector Outbound to Office 365: The message delivery was not")
        assert "454 4.7.0 Unable to establish an appropriate TLS channel: UntrustedRoot: Access Denied" in event.message


def test_kb_fix_under_replace_behaviour_restores_mail_flow():
    fleet = load("kb2888788")
    server = fleet.servers["EX02"]
    internal = find(server, "internal")
    before = len(events_2004(server))
    response = server.handle_request(request(
        call("Get-ExchangeCertificate", "before", properties=["FriendlyName", "Services"], Thumbprint=internal.thumbprint),
        call("Enable-ExchangeCertificate", "unbind", Thumbprint=internal.thumbprint, Services="IIS,POP,IMAP"),
        call("Get-ExchangeCertificate", "after", properties=["Services"], Thumbprint=internal.thumbprint),
        call("Get-Queue", "queue", properties=["NextHopDomain", "Status", "MessageCount", "LastError"],
             Server=COMPUTERNAME),
    ))
    assert response["calls"][2]["objects"] == [{"Services": "IMAP, POP, IIS"}]
    # Transport retries after the request, not in the middle of it: the same batch still sees Retry...
    assert response["calls"][3]["objects"][1]["Status"] == "Retry"
    # ... and the next read sees the queue drained.
    cloud = one(server, call("Get-Queue", properties=["NextHopDomain", "Status", "MessageCount", "LastError"],
                             Server=COMPUTERNAME))["objects"][1]
    assert cloud == {"NextHopDomain": "contoso.mail.onmicrosoft.com", "Status": "Ready", "MessageCount": 0,
                     "LastError": None}
    assert server.mail_flow["outbound_certificate"] == find(server, "public").thumbprint
    server.status()
    assert len(events_2004(server)) == before  # no new failure


def test_kb_fix_under_additive_behaviour_changes_nothing():
    fleet = load("kb2888788")
    server = fleet.servers["EX01"]
    internal = find(server, "internal")
    one(server, call("Enable-ExchangeCertificate", Thumbprint=internal.thumbprint, Services="IIS,POP,IMAP"))
    assert server.services_of(internal) & 16  # SMTP still there
    assert server.queue.status == "Retry"
    # ... which also moved the web binding: the KB's command passes IIS (exchange-facts warns about it).
    assert server.web_thumbprint == internal.thumbprint


def test_pinning_the_connector_fixes_every_server_at_once():
    fleet = load("kb2888788")
    ex01, ex02 = fleet.servers["EX01"], fleet.servers["EX02"]
    public = find(ex01, "public")
    name = "<I>%s<S>%s" % (public.issued.issuer, public.issued.subject)
    assert one(ex01, call("Set-SendConnector", Identity="Outbound to Office 365", TlsCertificateName=name))["ok"]
    # A connector is an organisation object: EX02's transport picks the change up too.
    assert ex01.queue.status == ex02.queue.status == "Ready"
    assert ex02.mail_flow["selection"]["rule"] == "TlsCertificateName"


def test_removing_the_untrusted_certificate_fixes_the_server():
    fleet = load("kb2888788")
    server = fleet.servers["EX01"]
    internal = find(server, "internal")
    assert one(server, call("Remove-ExchangeCertificate", Thumbprint=internal.thumbprint, Confirm=False))["ok"]
    assert server.mail_flow["delivered"] is True and server.queue.message_count == 0
    assert fleet.servers["EX02"].queue.status == "Retry"  # certificates are per server


def test_dropping_smtp_from_internal_transport_breaks_internal_mail_flow():
    fleet = load("kb2888788")
    server = fleet.servers["EX02"]  # replace behaviour
    assert server.status()["internal_mail_flow"] == {"ok": True, "reason": None}
    one(server, call("Enable-ExchangeCertificate", Thumbprint=server.internal_transport_thumbprint,
                     Services="IMAP,POP"))
    assert server.status()["internal_mail_flow"]["ok"] is False


# ------------------------------------------------------------------------- selection


def test_tls_certificate_name_latest_expiry_wins():
    fleet = fleet_with(
        {"short": cert(not_after="+30d"), "long": cert(not_after="+300d")},
        [{"id": "short", "services": "SMTP"}, {"id": "long", "services": "SMTP"}],
        connector_tls="short",  # same issuer and subject as "long"
    )
    server = fleet.servers["EX01"]
    assert server.mail_flow["outbound_certificate"] == find(server, "long").thumbprint
    assert server.mail_flow["delivered"] is True


def test_tls_certificate_name_match_without_smtp_is_unknown_credentials():
    fleet = fleet_with({"public": cert()}, [{"id": "public", "services": "IIS"}], connector_tls="public")
    server = fleet.servers["EX01"]
    assert server.mail_flow["selection"]["failure"] == "UnknownCredentials"
    assert "UnknownCredentials" in server.queue.last_error and server.queue.status == "Retry"


def test_tls_certificate_name_without_match_is_454_4_7_5():
    fleet = fleet_with({"public": cert(), "other": cert(subject="CN=other.contoso.com")},
                       [{"id": "other", "services": "SMTP"}], connector_tls="public")
    server = fleet.servers["EX01"]
    assert server.queue.last_error == ("454 4.7.5 The certificate specified in TlsCertificateName of the "
                                       "SendConnector could not be found.")
    assert server.events[-1].event_id == 12014 and server.events[-1].level == "Error"


@pytest.mark.parametrize(
    "certificates, installs, winner",
    [
        # newest NotBefore wins among CA-issued certificates (the KB's gap)
        ({"old": cert(not_before="-100d"), "new": cert(issuer="enterprise_ca", not_before="-1d")},
         ["old", "new"], "new"),
        # CA-issued beats self-signed, even a newer one
        ({"ca": cert(not_before="-100d"), "self": cert(issuer="self", not_before="-1d")}, ["ca", "self"], "ca"),
        # time-valid beats expired
        ({"valid": cert(not_before="-100d"), "expired": cert(not_before="-10d", not_after="-1d")},
         ["valid", "expired"], "valid"),
        # wildcard names count
        ({"wild": cert(subject="CN=*.contoso.com", sans=["*.contoso.com"])}, ["wild"], "wild"),
    ],
)
def test_fqdn_selection(certificates, installs, winner):
    fleet = fleet_with(certificates, [{"id": cid, "services": "SMTP"} for cid in installs])
    server = fleet.servers["EX01"]
    assert server.mail_flow["outbound_certificate"] == find(server, winner).thumbprint


def test_fqdn_selection_needs_smtp_private_key_and_name():
    fleet = fleet_with(
        {"nosmtp": cert(not_before="-1d"), "nokey": cert(not_before="-2d"), "other": cert(sans=["x.contoso.com"]),
         "good": cert(not_before="-50d")},
        [{"id": "nosmtp", "services": "IIS"}, {"id": "nokey", "services": "SMTP", "has_private_key": False},
         {"id": "other", "services": "SMTP"}, {"id": "good", "services": "SMTP"}],
    )
    server = fleet.servers["EX01"]
    assert server.mail_flow["selection"]["candidates"] == [find(server, "good").thumbprint]


def test_fqdn_falls_back_to_server_fqdn_when_connector_has_none():
    fleet = Fleet.from_dict({
        "organization": {"send_connectors": [{"name": "O365", "cloud": True, "fqdn": None}]},
        "servers": [{"name": "EX01"}],
    })
    server = fleet.servers["EX01"]
    # Only the self-signed certificate names ex01.contoso.com: Exchange Online refuses it.
    assert server.mail_flow["selection"]["looked_for"] == "ex01.contoso.com"
    assert server.mail_flow["outbound_certificate"] == server.internal_transport_thumbprint
    assert server.mail_flow["gateway"]["reason"] == "UntrustedRoot"


def test_no_matching_certificate():
    fleet = fleet_with({}, [])
    server = fleet.servers["EX01"]
    assert server.mail_flow["selection"]["failure"] == "NoCertificate" and server.queue.status == "Retry"


def test_server_outside_cloud_connectors_has_no_cloud_queue():
    fleet = load("edge")
    server = fleet.servers["EX01"]
    assert server.mail_flow["routes_to_exchange_online"] is False
    queues = one(server, call("Get-Queue", properties=["NextHopDomain"], Server=COMPUTERNAME))["objects"]
    assert queues == [{"NextHopDomain": "Submission"}]


# --------------------------------------------------------------------------- gateway


def test_missing_intermediate_partial_chain_while_exchange_says_valid():
    fleet = load("edge")
    server = fleet.servers["EDGE02"]
    public = find(server, "public")
    assert server.mail_flow["gateway"]["reason"] == "PartialChain"
    assert server.exchange_opinion(public) == ("Valid", "ThirdParty")
    properties = ["Thumbprint", "ChainThumbprints", "ChainStatus"]
    chains = one(server, call("Get-HybridmailCertificateChain", properties=properties))["objects"]
    chain = [c for c in chains if c["Thumbprint"] == public.thumbprint][0]
    assert chain["ChainStatus"] == ["PartialChain"] and chain["ChainThumbprints"] == [public.thumbprint]
    assert fleet.servers["EDGE01"].mail_flow["delivered"] is True


def test_expired_certificate_not_time_valid():
    fleet = load("stale_tls_name")
    server = fleet.servers["EX02"]
    assert server.mail_flow["outbound_certificate"] == find(server, "old").thumbprint
    assert server.mail_flow["gateway"]["reason"] == "NotTimeValid"
    assert server.exchange_opinion(find(server, "old"))[0] == "DateInvalid"


def test_self_signed_refused_even_when_exchange_trusts_it():
    fleet = load("only_untrusted")
    server = fleet.servers["EX02"]
    mail = find(server, "self_signed_mail")
    assert server.exchange_opinion(mail) == ("Valid", "Registry")
    assert server.mail_flow["gateway"]["reason"] == "UntrustedRoot"


def test_tls12_disabled_drops_the_connection():
    fleet = load("mixed")
    server = fleet.servers["EX10"]
    assert server.mail_flow["delivered"] is False and server.mail_flow["gateway"] is None
    assert "421 4.4.2 Connection dropped" in server.queue.last_error
    assert not events_2004(server)
    tls = one(server, call("Get-HybridmailTlsState", properties=["Tls12ClientEnabled", "Tls12ServerEnabled",
                                                                 "StrongCryptoNet4"]))["objects"]
    assert tls == [{"Tls12ClientEnabled": False, "Tls12ServerEnabled": False, "StrongCryptoNet4": False}]


def test_chain_helper_matches_cryptography_path_validation():
    fleet = load("kb2888788")
    server = fleet.servers["EX01"]
    store = x509.verification.Store(x509.load_pem_x509_certificates(fleet.trust_bundle_pem()))
    verifier = (x509.verification.PolicyBuilder().store(store).time(server.now())
                .build_server_verifier(x509.DNSName("mail.contoso.com")))
    chains = one(server, call("Get-HybridmailCertificateChain", properties=["Thumbprint", "ChainRawData"]))["objects"]
    verdicts = {}
    for entry in chains:
        ders = [x509.load_der_x509_certificate(base64.b64decode(raw)) for raw in entry["ChainRawData"]]
        try:
            verifier.verify(ders[0], ders[1:])
            verdicts[entry["Thumbprint"]] = True
        except x509.verification.VerificationError:
            verdicts[entry["Thumbprint"]] = False
    assert verdicts[find(server, "public").thumbprint] is True
    assert verdicts[find(server, "internal").thumbprint] is False


# --------------------------------------------------------------------------- locales


@pytest.mark.parametrize(
    "server_name, prose, level, culture",
    [
        ("EXDE01", "Die Nachrichtenübermittlung war nicht erfolgreich", "Informationen", "de-DE"),
        ("EXCZ01", "doručení zprávy nebylo úspěšné", "Informace", "cs-CZ"),
    ],
)
def test_localised_event_2004(server_name, prose, level, culture):
    fleet = load("localized")
    server = fleet.servers[server_name]
    response = server.handle_request(request(
        call("Get-WinEvent", "events", properties=["Id", "ProviderName", "LevelDisplayName", "Message"], MaxEvents=5,
             FilterHashtable={"LogName": "Application", "ProviderName": "MSExchangeTransport", "Id": 2004,
                              "StartTime": days_ago(7)}),
        call("Get-HybridmailHost", "host", properties=["Culture"]),
    ))
    event = response["calls"][0]["objects"][0]
    assert prose in event["Message"]
    assert "454 4.7.0" in event["Message"] and "UntrustedRoot" in event["Message"]
    assert event["LevelDisplayName"] == level and event["ProviderName"] == "MSExchangeTransport"
    assert response["calls"][1]["objects"] == [{"Culture": culture}]


def test_non_ascii_subjects_survive_the_wire():
    fleet = load("localized")
    objects = one(fleet.servers["EXCZ01"], call("Get-ExchangeCertificate", properties=["Subject", "RawData"]))["objects"]
    subjects = [o["Subject"] for o in objects]
    assert 'CN=mail.mueller.cz, O="Česká pošta, s.p.", L=Praha, C=CZ' in subjects
    assert "CN=mail.mueller.cz, OU=Oddělení IT, O=Česká pošta, C=CZ" in subjects
    raw = [o for o in objects if o["Subject"].startswith('CN=mail.mueller.cz, O="')][0]["RawData"]
    parsed = x509.load_der_x509_certificate(base64.b64decode(raw))
    assert parsed.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value == "Česká pošta, s.p."


def test_event_log_is_bounded():
    fleet = load("kb2888788")
    server = fleet.servers["EX01"]
    for _attempt in range(mailflow.MAX_EVENTS + 10):
        mailflow.attempt_delivery(server)
    assert len(server.events) == mailflow.MAX_EVENTS

"""Records parsed from the runner's converted objects (plugins/plugin_utils/_model.py)."""

from __future__ import annotations

import base64
import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptography import x509

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _model
from tests.lab import pki

# ---------------------------------------------------------------------------------------------
# Wire values
# ---------------------------------------------------------------------------------------------


def test_parse_utc_reads_the_runner_format_as_aware_utc():
    assert _model.parse_utc("2026-01-31T12:30:00Z") == datetime.datetime(2026, 1, 31, 12, 30, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("value", [None, "", "/Date(1700000000000)/", 1700000000, "yesterday"])
def test_parse_utc_gives_none_for_anything_else(value):
    assert _model.parse_utc(value) is None


@pytest.mark.parametrize(
    "value, expected",
    [
        ("IMAP, POP, IIS, SMTP", {"IMAP", "POP", "IIS", "SMTP"}),
        ("SMTP", {"SMTP"}),
        ("None", set()),
        (None, set()),
        (["IIS", "SMTP"], {"IIS", "SMTP"}),
    ],
)
def test_parse_flags(value, expected):
    assert _model.parse_flags(value) == frozenset(expected)


def test_normalize_thumbprint_drops_separators_and_upper_cases():
    assert _model.normalize_thumbprint("ab 12:cd") == "AB12CD"


# ---------------------------------------------------------------------------------------------
# TlsCertificateName
# ---------------------------------------------------------------------------------------------

HYBRID_ISSUER = "CN=DigiCert Global G2 TLS RSA SHA256 2020 CA1, O=DigiCert Inc, C=US"
HYBRID_SUBJECT = "CN=mail.contoso.com, O=Contoso, L=Redmond, S=Washington, C=US"


def test_tls_certificate_name_parses_issuer_and_subject():
    text = "<I>%s<S>%s" % (HYBRID_ISSUER, HYBRID_SUBJECT)
    assert _model.parse_tls_certificate_name(text) == (HYBRID_ISSUER, HYBRID_SUBJECT)
    assert _model.tls_certificate_name_problem(text) is None


def test_tls_certificate_name_keeps_quoted_separators_inside_names():
    subject = 'CN=mail.contoso.com, O="Contoso <S> Partners, Inc."'
    parsed = _model.parse_tls_certificate_name(_model.format_tls_certificate_name(HYBRID_ISSUER, subject))
    assert parsed == _model.TlsCertificateName(HYBRID_ISSUER, subject)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("CN=issuer<S>CN=subject", "does not start with <I>"),
        ("<I>CN=issuer CN=subject", "has no <S> separating issuer and subject"),
        ("<I><S>CN=subject", "has an empty issuer"),
        ("<I>CN=issuer<S>  ", "has an empty subject"),
        ("<I>CN=a<S>CN=b<S>CN=c", "has more than one <S>"),
    ],
)
def test_malformed_tls_certificate_name_gives_none_and_a_reason(text, problem):
    assert _model.parse_tls_certificate_name(text) is None
    assert _model.tls_certificate_name_problem(text) == problem


@pytest.mark.parametrize("text", [None, "", "   "])
def test_unset_tls_certificate_name_is_neither_a_name_nor_a_problem(text):
    assert _model.parse_tls_certificate_name(text) is None
    assert _model.tls_certificate_name_problem(text) is None


_NAME_VALUE = st.text(alphabet=st.characters(blacklist_characters='<>"', blacklist_categories=("Cs",)), min_size=1).filter(str.strip)


@given(issuer=_NAME_VALUE, subject=_NAME_VALUE)
def test_tls_certificate_name_round_trip(issuer, subject):
    parsed = _model.parse_tls_certificate_name(_model.format_tls_certificate_name(issuer, subject))
    assert parsed == (issuer.strip(), subject.strip())


# ---------------------------------------------------------------------------------------------
# Host names (RFC 6125)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, fqdn, expected",
    [
        ("mail.contoso.com", "mail.contoso.com", True),
        ("MAIL.Contoso.COM", "mail.contoso.com", True),
        ("mail.contoso.com.", "mail.contoso.com", True),
        ("mail.contoso.com", "smtp.contoso.com", False),
        ("*.contoso.com", "mail.contoso.com", True),
        ("*.contoso.com", "MAIL.CONTOSO.COM", True),
        ("*.contoso.com", "contoso.com", False),  # the wildcard is exactly one label
        ("*.contoso.com", "a.mail.contoso.com", False),
        ("*.contoso.com", ".contoso.com", False),
        ("*.com", "contoso.com", False),  # not over a whole top-level domain
        ("mail*.contoso.com", "mail1.contoso.com", False),  # partial-label wildcards are not honoured
        ("*mail.contoso.com", "xmail.contoso.com", False),
        ("mail.*.com", "mail.contoso.com", False),  # only the left-most label
        ("*.*.com", "a.contoso.com", False),
        ("*", "contoso", False),
        ("*.contoso.com", "*.contoso.com", False),  # a host name is never a pattern
        ("", "mail.contoso.com", False),
        ("mail.contoso.com", None, False),
    ],
)
def test_dns_name_matches(pattern, fqdn, expected):
    assert _model.dns_name_matches(pattern, fqdn) is expected


# ---------------------------------------------------------------------------------------------
# Connectors, configuration, queues, events
# ---------------------------------------------------------------------------------------------


def hcw_send_connector(**overrides):
    """Get-SendConnector's "Outbound to Office 365" as the Hybrid Configuration Wizard creates it."""
    obj = {
        "Identity": "Outbound to Office 365 - 1b2c",
        "Name": "Outbound to Office 365 - 1b2c",
        "Enabled": True,
        "Fqdn": "mail.contoso.com",
        "AddressSpaces": ["smtp:contoso.mail.onmicrosoft.com;1"],
        "SourceTransportServers": ["EX01", "EX02"],
        "SmartHosts": [],
        "DNSRoutingEnabled": True,
        "CloudServicesMailEnabled": True,
        "RequireTLS": True,
        "TlsAuthLevel": "DomainValidation",
        "TlsDomain": "mail.protection.outlook.com",
        "TlsCertificateName": "<I>%s<S>%s" % (HYBRID_ISSUER, HYBRID_SUBJECT),
    }
    obj.update(overrides)
    return obj


def test_send_connector_fields():
    connector = _model.SendConnector.from_object(hcw_send_connector())
    assert connector.address_spaces == (_model.AddressSpace("SMTP", "contoso.mail.onmicrosoft.com", 1),)
    assert connector.source_transport_servers == ("EX01", "EX02")
    assert connector.require_tls is True and connector.tls_auth_level == "DomainValidation"
    assert _model.parse_tls_certificate_name(connector.tls_certificate_name) == (HYBRID_ISSUER, HYBRID_SUBJECT)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, True),
        ({"CloudServicesMailEnabled": False}, True),  # the tenant routing domain is enough
        ({"AddressSpaces": ["SMTP:*;1"]}, True),  # the flag is enough
        ({"CloudServicesMailEnabled": None, "AddressSpaces": ["SMTP:Contoso.Mail.OnMicrosoft.com;1"]}, True),
        ({"CloudServicesMailEnabled": False, "AddressSpaces": ["SMTP:*;1"]}, False),
        ({"CloudServicesMailEnabled": False, "AddressSpaces": ["SMTP:mail.onmicrosoft.com.contoso.com;1"]}, False),
        ({"CloudServicesMailEnabled": False, "AddressSpaces": []}, False),
    ],
)
def test_cloud_send_connector_detection(overrides, expected):
    assert _model.SendConnector.from_object(hcw_send_connector(**overrides)).is_cloud is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("SMTP:contoso.com;1", _model.AddressSpace("SMTP", "contoso.com", 1)),
        ("smtp:*.contoso.com;10", _model.AddressSpace("SMTP", "*.contoso.com", 10)),
        ("contoso.com", _model.AddressSpace("SMTP", "contoso.com", None)),
        ("SMTP:*", _model.AddressSpace("SMTP", "*", None)),
    ],
)
def test_address_space_parse(text, expected):
    assert _model.AddressSpace.parse(text) == expected


@pytest.mark.parametrize(
    "space, domain, expected",
    [
        ("SMTP:*;1", "fabrikam.com", True),
        ("SMTP:contoso.com;1", "CONTOSO.com", True),
        ("SMTP:contoso.com;1", "sub.contoso.com", False),
        ("SMTP:*.contoso.com;1", "contoso.com", True),
        ("SMTP:*.contoso.com;1", "a.b.contoso.com", True),
        ("SMTP:*.contoso.com;1", "notcontoso.com", False),
        ("X400:c=US;a= ;p=Contoso;1", "contoso.com", False),
    ],
)
def test_address_space_covers(space, domain, expected):
    assert _model.AddressSpace.parse(space).covers(domain) is expected


def test_receive_connector_accepting_cloud_mail():
    connector = _model.ReceiveConnector.from_object(
        {
            "Identity": "EX01\\Default Frontend EX01",
            "Bindings": ["[::]:25", "0.0.0.0:25"],
            "AuthMechanism": "Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer",
            "TlsDomainCapabilities": ["mail.protection.outlook.com:AcceptCloudServicesMail"],
        }
    )
    assert connector.accepts_cloud_services_mail
    assert "ExchangeServer" in connector.auth_mechanism
    assert connector.bindings == ("[::]:25", "0.0.0.0:25")
    assert not _model.ReceiveConnector.from_object({"TlsDomainCapabilities": None}).accepts_cloud_services_mail


def test_hybrid_configuration_fields():
    config = _model.HybridConfiguration.from_object(
        {
            "TlsCertificateName": "<I>CN=CA<S>CN=mail.contoso.com",
            "SendingTransportServers": ["EX01"],
            "ReceivingTransportServers": ["EX01", "EX02"],
            "EdgeTransportServers": [],
            "Domains": ["contoso.com", "contoso.mail.onmicrosoft.com"],
            "OnPremisesSmartHost": "mail.contoso.com",
            "Features": ["FreeBusy", "MoveMailbox"],
        }
    )
    assert config.receiving_transport_servers == ("EX01", "EX02")
    assert config.edge_transport_servers == ()
    assert config.on_premises_smart_host == "mail.contoso.com"


@pytest.mark.parametrize(
    "obj, expected_edge",
    [
        ({"Name": "EX01", "ServerRole": "Mailbox", "IsEdgeServer": False}, False),
        ({"Name": "EDGE01", "ServerRole": "Edge", "IsEdgeServer": None}, True),
        ({"Name": "EDGE02", "ServerRole": "None", "IsEdgeServer": True}, True),
    ],
)
def test_exchange_server_edge_detection(obj, expected_edge):
    assert _model.ExchangeServer.from_object(obj).is_edge is expected_edge


def test_transport_service_normalizes_the_internal_certificate_thumbprint():
    service = _model.TransportService.from_object({"Name": "EX01", "InternalTransportCertificateThumbprint": "ab12 cd"})
    assert service.internal_transport_certificate_thumbprint == "AB12CD"
    assert _model.TransportService.from_object({"Name": "EX01"}).internal_transport_certificate_thumbprint is None


def queue(next_hop):
    return _model.QueueInfo.from_object(
        {
            "Identity": "EX01\\12",
            "DeliveryType": "SmtpDeliveryToMailbox",
            "NextHopDomain": next_hop,
            "Status": "Retry",
            "MessageCount": 17,
            "LastError": '451 4.4.0 Primary target IP address responded with: "454 4.7.0 ... UntrustedRoot"',
            "LastRetryTime": "2026-03-01T08:00:00Z",
        }
    )


def test_queue_fields():
    info = queue("contoso.mail.onmicrosoft.com")
    assert info.message_count == 17
    assert info.last_retry_time == datetime.datetime(2026, 3, 1, 8, tzinfo=datetime.timezone.utc)
    assert info.next_retry_time is None


@pytest.mark.parametrize(
    "next_hop, connector_spaces, expected",
    [
        ("contoso.mail.onmicrosoft.com", [], True),
        ("Contoso.Mail.OnMicrosoft.com", [], True),
        ("fabrikam.com", [], False),
        ("contoso.com", ["SMTP:contoso.com;1"], True),  # routed by a cloud connector
        ("sales.contoso.com", ["SMTP:*.contoso.com;1"], True),
        (None, ["SMTP:*;1"], False),
    ],
)
def test_queue_to_exchange_online(next_hop, connector_spaces, expected):
    cloud = _model.SendConnector.from_object(hcw_send_connector(AddressSpaces=["SMTP:contoso.mail.onmicrosoft.com;1"] + connector_spaces))
    assert queue(next_hop).is_to_exchange_online([cloud]) is expected


def test_queue_routed_by_a_non_cloud_connector_is_not_to_exchange_online():
    internet = _model.SendConnector.from_object(hcw_send_connector(CloudServicesMailEnabled=False, AddressSpaces=["SMTP:*;1"]))
    assert not queue("fabrikam.com").is_to_exchange_online([internet])


# The event text of KB 2888788 in the languages it is published in (exchange-facts.md).
EVENT_TEXTS = {
    "en": (
        "Send connector Outbound to Office 365: The message delivery was not successful. The message with "
        "message ID <id> was acknowledged with SMTP response 454 4.7.0 Unable to establish an appropriate "
        "TLS channel: UntrustedRoot: Access Denied"
    ),
    "de": (
        "Sendeconnector Outbound to Office 365: Die Nachrichtenübermittlung war nicht erfolgreich. Die "
        "Nachricht mit der Nachrichten-ID <id> wurde mit der SMTP-Antwort 454 4.7.0 Unable to establish an "
        "appropriate TLS channel: UntrustedRoot: Access Denied bestätigt."
    ),
    "cs": (
        "Konektor pro odesílání Outbound to Office 365: doručení zprávy nebylo úspěšné. Zpráva s ID "
        "<id> byla potvrzena odpovědí SMTP 454 4.7.0 Unable to establish an appropriate TLS channel: "
        "UntrustedRoot: Access Denied."
    ),
}


def transport_event(message, event_id=2004, provider="MSExchangeTransport"):
    return _model.TransportEvent.from_object(
        {
            "Id": event_id,
            "ProviderName": provider,
            "TimeCreated": "2026-03-01T07:59:58Z",
            "LevelDisplayName": "Informationen",
            "MachineName": "EX01.contoso.com",
            "Message": message,
        }
    )


@pytest.mark.parametrize("locale", sorted(EVENT_TEXTS))
def test_untrusted_root_2004_is_detected_in_every_locale(locale):
    assert transport_event(EVENT_TEXTS[locale]).is_untrusted_root_2004


@pytest.mark.parametrize(
    "message",
    [
        "Die Nachrichtenübermittlung war nicht erfolgreich ... 454\r\n4.7.0 ...",  # reply wrapped by rendering
        "doručení zprávy nebylo úspěšné ... untrustedroot",
    ],
)
def test_untrusted_root_2004_tokens_survive_wrapping_and_case(message):
    assert transport_event(message).is_untrusted_root_2004


@pytest.mark.parametrize(
    "event",
    [
        transport_event(EVENT_TEXTS["en"], event_id=2005),
        transport_event(EVENT_TEXTS["en"], provider="MSExchangeFrontEndTransport"),
        transport_event("The message delivery was not successful. SMTP response 451 4.4.0 DNS query failed."),
        transport_event(None),
    ],
)
def test_other_events_are_not_the_kb_condition(event):
    assert not event.is_untrusted_root_2004


def test_transport_event_fields():
    event = transport_event(EVENT_TEXTS["en"])
    assert event.event_id == 2004
    assert event.time_created == datetime.datetime(2026, 3, 1, 7, 59, 58, tzinfo=datetime.timezone.utc)
    assert event.machine_name == "EX01.contoso.com"


# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def public_ca():
    root = pki.make_ca("CN=Lab Public Root, O=Lab Trust Services, C=US", key_kind="ec", key_size=384, now=NOW)
    return pki.make_ca("CN=Lab Public TLS CA, O=Lab Trust Services, C=US", root, key_kind="rsa", now=NOW)


@pytest.fixture(scope="module")
def hybrid_leaf(public_ca):
    return pki.make_leaf(
        "CN=mail.contoso.com, O=Contoso, C=US",
        public_ca,
        sans=["mail.contoso.com", "autodiscover.contoso.com", "192.0.2.25"],
        now=NOW,
        not_before="2026-01-01T00:00:00Z",
        not_after="2027-01-01T00:00:00Z",
    )


def test_certificate_keeps_exchange_report(hybrid_leaf, exchange_certificate):
    certificate = exchange_certificate(
        hybrid_leaf,
        Thumbprint=hybrid_leaf.thumbprint.lower(),
        Services="IMAP, POP, IIS, SMTP",
        Status="Untrusted",
        RootCAType="Enterprise",
        CertificateDomains=["mail.contoso.com", "autodiscover.contoso.com"],
    )
    assert certificate.thumbprint == hybrid_leaf.thumbprint
    assert certificate.services == {"IMAP", "POP", "IIS", "SMTP"}
    assert (certificate.status, certificate.root_ca_type) == ("Untrusted", "Enterprise")
    assert certificate.has_private_key is True and certificate.is_self_signed is False
    assert certificate.certificate_domains == ("mail.contoso.com", "autodiscover.contoso.com")
    assert certificate.reported_subject == "CN=mail.contoso.com, O=Contoso, C=US"
    assert certificate.parse_error is None and certificate.x509.thumbprint == certificate.thumbprint


def test_certificate_facts_come_from_the_der(hybrid_leaf, public_ca, exchange_certificate):
    facts = exchange_certificate(hybrid_leaf, Subject=None, Issuer=None, NotAfter=None).x509
    assert facts.thumbprint == hybrid_leaf.thumbprint
    assert facts.serial == "%X" % hybrid_leaf.cert.serial_number
    assert facts.subject == "CN=mail.contoso.com,O=Contoso,C=US"
    assert facts.subject_windows == "CN=mail.contoso.com, O=Contoso, C=US"
    assert facts.issuer_windows == "CN=Lab Public TLS CA, O=Lab Trust Services, C=US"
    assert facts.subject_cn == "mail.contoso.com"
    assert facts.dns_names == ("mail.contoso.com", "autodiscover.contoso.com")  # the IP SAN is not a DNS name
    assert facts.not_before == datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    assert facts.not_after == datetime.datetime(2027, 1, 1, tzinfo=datetime.timezone.utc)
    assert (facts.key_type, facts.key_bits, facts.signature_hash) == ("RSA", 2048, "sha256")
    assert facts.ekus == ("serverAuth",)
    assert facts.is_ca is False and facts.self_signed is False
    assert facts.authority_key_id == public_ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex().upper()
    assert facts.subject_key_id is not None and facts.subject_key_id.isupper()


def test_ca_certificate_facts(public_ca):
    facts = _model.parse_x509(public_ca.der)
    assert facts.is_ca and facts.ekus is None
    assert (facts.key_type, facts.key_bits) == ("RSA", 2048)


@pytest.mark.parametrize("size", [256, 384])
def test_ecc_key_facts(public_ca, size):
    leaf = pki.make_leaf("CN=mail.contoso.com", public_ca, sans=["mail.contoso.com"], key_kind="ec", key_size=size, now=NOW)
    assert (_model.parse_x509(leaf.der).key_type, _model.parse_x509(leaf.der).key_bits) == ("EC", size)


def test_sha1_signature_is_named(public_ca):
    leaf = pki.make_leaf("CN=legacy.contoso.com", public_ca, sans=["legacy.contoso.com"], hash="sha1", now=NOW)
    assert _model.parse_x509(leaf.der).signature_hash == "sha1"


def test_md5_signature_is_named(public_ca, der):
    leaf = pki.make_leaf("CN=ancient.contoso.com", public_ca, sans=["ancient.contoso.com"], now=NOW)
    facts = _model.parse_x509(der.reissue(leaf.cert, public_ca.key, signature_hash="md5"))
    assert facts.signature_hash == "md5"


@pytest.mark.parametrize(
    "subject, windows, rfc4514",
    [
        ("CN=mail.mueller.de, O=Müller GmbH, C=DE", "CN=mail.mueller.de, O=Müller GmbH, C=DE", "CN=mail.mueller.de,O=Müller GmbH,C=DE"),
        ("CN=posta.cz, O=Česká pošta, C=CZ", "CN=posta.cz, O=Česká pošta, C=CZ", "CN=posta.cz,O=Česká pošta,C=CZ"),
        (
            'CN=mail.contoso.com, O="Contoso, Ltd", C=US',
            'CN=mail.contoso.com, O="Contoso, Ltd", C=US',
            "CN=mail.contoso.com,O=Contoso\\, Ltd,C=US",
        ),
        ('CN=mail.contoso.com, O="Say ""hi"""', 'CN=mail.contoso.com, O="Say ""hi"""', 'CN=mail.contoso.com,O=Say \\"hi\\"'),
        ('CN=mail.contoso.com, OU=" padded"', 'CN=mail.contoso.com, OU=" padded"', "CN=mail.contoso.com,OU=\\ padded"),
        ('CN=mail.contoso.com, OU=""', 'CN=mail.contoso.com, OU=""', None),
        ("CN=mail.contoso.com + SERIALNUMBER=42, S=Bayern, C=DE", "CN=mail.contoso.com + SERIALNUMBER=42, S=Bayern, C=DE", None),
        ("E=pki@contoso.com, CN=ca, DC=contoso, DC=com", "E=pki@contoso.com, CN=ca, DC=contoso, DC=com", None),
        (
            "CN=www.contoso.com, OID.2.5.4.15=Private Organization, C=US",
            "CN=www.contoso.com, OID.2.5.4.15=Private Organization, C=US",
            None,
        ),
    ],
)
def test_subject_in_the_form_exchange_shows(subject, windows, rfc4514):
    name = pki.parse_name(subject)
    assert _model.windows_name(name) == windows
    assert _model.windows_name(name) == pki.format_name(name)  # the lab writes Subject the same way
    if rfc4514 is not None:
        assert _model.parse_x509(pki.make_leaf(name, None, sans=["x.contoso.com"], now=NOW).der).subject == rfc4514


def test_certificate_without_san_uses_the_cn(public_ca):
    leaf = _model.parse_x509(pki.make_leaf("CN=mail.contoso.com, O=Contoso", public_ca, sans=None, now=NOW).der)
    assert leaf.dns_names == () and leaf.subject_cn == "mail.contoso.com"


def test_dates_outside_utctime_range(public_ca, der):
    leaf = pki.make_leaf(
        "CN=forever.contoso.com",
        public_ca,
        sans=["forever.contoso.com"],
        now=NOW,
        not_before="2026-01-01",
        not_after="2060-12-31T23:59:59Z",
    )
    pre_1950 = datetime.datetime(1949, 12, 31, tzinfo=datetime.timezone.utc)

    def backdate(tbs):
        tbs[der.VALIDITY] = der.tlv(0x30, der.time(pre_1950) + der.children(tbs[der.VALIDITY])[1])

    facts = _model.parse_x509(der.reissue(leaf.cert, public_ca.key, edit=backdate))
    assert facts.not_before == pre_1950  # GeneralizedTime
    assert facts.not_after == datetime.datetime(2060, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)


def test_not_before_in_the_future_is_read_as_is(public_ca):
    leaf = pki.make_leaf("CN=soon.contoso.com", public_ca, sans=["soon.contoso.com"], now=NOW, not_before="+30d", not_after="+400d")
    assert _model.parse_x509(leaf.der).not_before == NOW + datetime.timedelta(days=30)


def test_exchange_self_signed_certificate():
    issued = pki.make_exchange_self_signed("EX01", "ex01.contoso.com", now=NOW)
    facts = _model.parse_x509(issued.der)
    assert facts.self_signed and facts.subject_windows == facts.issuer_windows == "CN=EX01"
    assert facts.dns_names == ("EX01", "ex01.contoso.com")


def test_same_name_from_another_key_is_not_self_signed(public_ca):
    other_key = pki.make_key("ec", 256, slot=7)
    impostor = pki.make_leaf("CN=Lab Public TLS CA, O=Lab Trust Services, C=US", public_ca, sans=["ca.lab"], key=other_key, now=NOW)
    assert not _model.parse_x509(impostor.der).self_signed


def test_thumbprint_mismatch_is_a_parse_error_that_keeps_the_facts(hybrid_leaf, exchange_certificate):
    certificate = exchange_certificate(hybrid_leaf, Thumbprint="00" * 20)
    assert certificate.x509 is not None and certificate.x509.thumbprint != certificate.thumbprint
    assert certificate.x509 is not None and certificate.x509.thumbprint == hybrid_leaf.thumbprint
    assert hybrid_leaf.thumbprint in certificate.parse_error and "00" * 20 in certificate.parse_error


def test_missing_thumbprint_is_recomputed(hybrid_leaf, exchange_certificate):
    certificate = exchange_certificate(hybrid_leaf, Thumbprint=None)
    assert certificate.thumbprint == hybrid_leaf.thumbprint and certificate.parse_error is None


@pytest.mark.parametrize(
    "raw_data, problem",
    [
        (None, "RawData is missing"),
        ("", "RawData is missing"),
        ("not base64 at all!", "RawData is not base64"),
        (base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), "RawData is not a readable X.509 certificate"),
    ],
)
def test_malformed_raw_data_is_recorded_on_that_certificate_only(hybrid_leaf, exchange_certificate, raw_data, problem):
    broken = exchange_certificate(hybrid_leaf, RawData=raw_data)
    assert broken.x509 is None and broken.parse_error.startswith(problem)
    assert broken.thumbprint == hybrid_leaf.thumbprint and broken.services == {"IIS", "SMTP"}
    assert exchange_certificate(hybrid_leaf).parse_error is None


def version_5(der, tbs):
    tbs[der.VERSION] = der.tlv(0xA0, der.tlv(0x02, b"\x04"))


def duplicated_extension(der, tbs):
    extensions = der.children(der.content(tbs[der.EXTENSIONS]))
    tbs[der.EXTENSIONS] = der.tlv(0xA3, der.tlv(0x30, b"".join(extensions + extensions[:1])))


@pytest.mark.parametrize("defect", [version_5, duplicated_extension])
def test_malformed_certificate_structure_is_a_parse_error(hybrid_leaf, public_ca, exchange_certificate, der, defect):
    broken = der.reissue(hybrid_leaf.cert, public_ca.key, edit=lambda tbs: defect(der, tbs))
    certificate = exchange_certificate(hybrid_leaf, RawData=base64.b64encode(broken).decode())
    assert certificate.x509 is None
    assert certificate.parse_error.startswith("RawData is not a readable X.509 certificate")


def test_truncated_raw_data_is_a_parse_error(hybrid_leaf, exchange_certificate):
    truncated = base64.b64encode(hybrid_leaf.der[: len(hybrid_leaf.der) // 2]).decode()
    assert exchange_certificate(hybrid_leaf, RawData=truncated).x509 is None


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_no_raw_data_makes_the_parser_raise(hybrid_leaf, data):
    der = bytearray(hybrid_leaf.der)
    for position in data.draw(st.lists(st.integers(0, len(der) - 1), max_size=4)):
        der[position] = data.draw(st.integers(0, 255))
    raw = data.draw(st.one_of(st.just(bytes(der)), st.binary(max_size=64)))
    certificate = _model.Certificate.from_object({"Thumbprint": "AB", "RawData": base64.b64encode(raw).decode()})
    # Readable or not, these bytes are never the certificate with thumbprint AB.
    assert certificate.parse_error is not None
    assert certificate.x509 is None or certificate.x509.thumbprint != certificate.thumbprint


def test_certificate_chain_object(public_ca, hybrid_leaf):
    chain = _model.CertificateChain.from_object(
        {
            "Thumbprint": hybrid_leaf.thumbprint,
            "ChainThumbprints": [hybrid_leaf.thumbprint, public_ca.thumbprint],
            "ChainRawData": [base64.b64encode(hybrid_leaf.der).decode(), "garbage"],
            "ChainStatus": "PartialChain",
        }
    )
    assert chain.certificates == (hybrid_leaf.cert,)
    assert chain.chain_thumbprints == (hybrid_leaf.thumbprint, public_ca.thumbprint)
    assert chain.chain_status == {"PartialChain"}
    assert chain.parse_error.startswith("chain element 1:")


# ---------------------------------------------------------------------------------------------
# Host names and TlsCertificateName against certificates
# ---------------------------------------------------------------------------------------------


def test_sans_decide_and_the_cn_is_ignored_when_there_are_sans(public_ca, exchange_certificate):
    certificate = exchange_certificate(
        pki.make_leaf("CN=mail.contoso.com", public_ca, sans=["autodiscover.contoso.com", "*.contoso.net"], now=NOW),
        CertificateDomains=["mail.contoso.com", "autodiscover.contoso.com", "*.contoso.net"],
    )
    assert _model.name_matches("autodiscover.contoso.com", certificate)
    assert _model.name_matches("smtp.contoso.net", certificate)
    assert not _model.name_matches("mail.contoso.com", certificate)
    # ... but Exchange lists the CN among CertificateDomains and may pick the certificate for it.
    assert _model.exchange_domain_matches("mail.contoso.com", certificate)


def test_cn_is_used_when_there_is_no_san(public_ca, exchange_certificate):
    certificate = exchange_certificate(pki.make_leaf("CN=mail.contoso.com", public_ca, sans=None, now=NOW))
    assert _model.name_matches("MAIL.contoso.com", certificate)
    assert not _model.name_matches("smtp.contoso.com", certificate)


def test_exchange_domain_matches_falls_back_to_parsed_names(public_ca, exchange_certificate):
    certificate = exchange_certificate(
        pki.make_leaf("CN=mail.contoso.com", public_ca, sans=["smtp.contoso.com"], now=NOW), CertificateDomains=None
    )
    assert _model.exchange_domain_matches("mail.contoso.com", certificate)
    assert _model.exchange_domain_matches("smtp.contoso.com", certificate)


def test_unparsed_certificate_matches_no_name(hybrid_leaf, exchange_certificate):
    assert not _model.name_matches("mail.contoso.com", exchange_certificate(hybrid_leaf, RawData=None))


def test_tls_certificate_name_selects_the_latest_expiry_first(public_ca, exchange_certificate):
    subject = "CN=mail.contoso.com, O=Contoso, C=US"
    older = exchange_certificate(pki.make_leaf(subject, public_ca, sans=["mail.contoso.com"], now=NOW, not_after="+100d"))
    newer = exchange_certificate(pki.make_leaf(subject, public_ca, sans=["mail.contoso.com"], now=NOW, not_after="+300d"))
    other = exchange_certificate(pki.make_leaf("CN=mail.contoso.com", public_ca, sans=["mail.contoso.com"], now=NOW))
    tls_name = _model.parse_tls_certificate_name(_model.tls_certificate_name_of(older))
    assert tls_name == (public_ca.subject, subject)
    assert _model.certificates_matching_tls_name(tls_name, [older, other, newer]) == (newer, older)


def test_tls_certificate_name_matching_is_case_insensitive(hybrid_leaf, exchange_certificate):
    tls_name = _model.TlsCertificateName("cn=lab public tls ca, o=lab trust services, c=us", "CN=MAIL.CONTOSO.COM, O=Contoso, C=US")
    assert _model.tls_name_selects(tls_name, exchange_certificate(hybrid_leaf))


def test_tls_certificate_name_matches_by_reported_or_parsed_names(hybrid_leaf, exchange_certificate):
    tls_name = _model.TlsCertificateName("CN=Lab Public TLS CA, O=Lab Trust Services, C=US", "CN=mail.contoso.com, O=Contoso, C=US")
    assert _model.tls_name_selects(tls_name, exchange_certificate(hybrid_leaf, Subject=None, Issuer=None))
    assert _model.tls_name_selects(tls_name, exchange_certificate(hybrid_leaf, RawData=None))
    assert not _model.tls_name_selects(tls_name._replace(subject="CN=mail.contoso.com"), exchange_certificate(hybrid_leaf))


# -------------------------------------------------------------------------------- ECC support
# CSS-Exchange HealthChecker: Invoke-AnalyzerSecurityOverrides.ps1 (Global/ECCCertificateSupport, Enabled=true,
# and the registry value EnableEccCertificateSupport = 1), Get-FilteredSettingOverrideInformation.ps1 (Status
# Accepted, Server empty or naming the server).
ECC_OVERRIDE = {"Name": "EnableECCCertificateSupport", "ComponentName": "Global", "SectionName": "ECCCertificateSupport",
                "Parameters": ["Enabled=true"], "Server": [], "Status": "Accepted"}


@pytest.mark.parametrize("override, applies", [
    (ECC_OVERRIDE, True),
    (dict(ECC_OVERRIDE, Server=["EX01"]), True),
    (dict(ECC_OVERRIDE, Server="ex01"), True),  # one server, deserialized as a string
    (dict(ECC_OVERRIDE, Server=["EX02"]), False),
    (dict(ECC_OVERRIDE, Parameters="Enabled=true"), True),
    (dict(ECC_OVERRIDE, Parameters=["Enabled=false"]), False),
    (dict(ECC_OVERRIDE, Status="Rejected"), False),
    (dict(ECC_OVERRIDE, SectionName="ECC"), False),
    # New-SettingOverride's parameter names are not Get-SettingOverride's property names
    ({"Component": "Global", "Section": "ECCCertificateSupport", "Parameters": ["Enabled=true"]}, False),
])
def test_ecc_override_applies(override, applies):
    assert _model.ecc_override_applies([override], "EX01") is applies


@pytest.mark.parametrize("overrides, registry, is_edge, state, words", [
    ([ECC_OVERRIDE], True, False, True, "is enabled"),
    ([ECC_OVERRIDE], None, False, False, "not fully enabled"),  # HealthChecker: "No longer fully enabled"
    ([ECC_OVERRIDE], False, False, False, "is not 1"),
    ([ECC_OVERRIDE], "unread", False, None, "could not be read"),
    ([], True, False, False, "no ECCCertificateSupport setting override"),
    (None, True, False, None, "could not read the setting overrides"),
    (None, None, True, None, "Edge Transport"),
])
def test_ecc_support(overrides, registry, is_edge, state, words):
    # registry: the EnableEccCertificateSupport value of Get-HybridmailTlsState's object; "unread": no object.
    tls_state = None if registry == "unread" else {"Tls12ClientEnabled": True, "EccCertificateSupport": registry}
    found, why = _model.ecc_support(overrides, tls_state, "EX01", is_edge)
    assert found is state and words in why, why

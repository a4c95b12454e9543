"""Facts of simulated Exchange servers for unit tests, built the way production builds them.

Real X.509 material from tests/lab/pki.py -> objects shaped like runner.ps1's response ->
_snapshot.ServerSnapshot.from_response -> _facts.evaluate -> _facts.server_facts. A test changes the
scenario by editing the Server record (certificates, connectors, queue, events ...) before calling
facts(). EC keys keep certificate generation fast; RSA only where a key size matters.
"""

from __future__ import annotations

import base64
import copy
import datetime
import functools
from dataclasses import dataclass, field

from tests.lab import pki

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _autofix, _facts, _snapshot, _trust

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
DOMAIN = "contoso.com"
HYBRID_NAME = "mail.contoso.com"
CLOUD_SPACE = "smtp:contoso.mail.onmicrosoft.com;1"
HCW_FEATURES = ["FreeBusy", "MoveMailbox", "Mailtips", "MessageTracking", "OwaRedirection", "OnlineArchive", "SecureMail", "Photos"]

_slots = iter(range(1000, 100000))


def _ec_key():
    return pki.make_key("ec", 256, next(_slots))


@functools.lru_cache(maxsize=None)
def authorities():
    """The fleet's CAs: a public root and issuing CA (the trust bundle), and an enterprise root (not in it)."""
    start = NOW - datetime.timedelta(days=800)
    public_root = pki.make_ca("CN=Lab Public Root CA, O=Lab Trust Services, C=US", key_kind="ec", key_slot=11,
                              not_before=start, now=NOW)
    public_ca = pki.make_ca("CN=Lab Public TLS CA 2026, O=Lab Trust Services, C=US", public_root, key_kind="ec",
                            key_slot=12, not_before=start, now=NOW)
    enterprise_root = pki.make_ca("CN=Contoso Enterprise Root CA, DC=contoso, DC=com", key_kind="ec", key_slot=13,
                                  not_before=start, now=NOW)
    return public_root, public_ca, enterprise_root


@functools.lru_cache(maxsize=None)
def trust_store() -> _trust.TrustStore:
    # Like the lab's bundle: the public root, plus its issuing CA (bundle intermediates are never anchors, they
    # only tell an incomplete chain from an unknown root).
    return _trust.trust_store_from_pem(pki.pem_bundle(authorities()[:2]), "lab-public-roots.pem")


def public_cert(*names, **options) -> pki.Issued:
    names = names or (HYBRID_NAME, "autodiscover." + DOMAIN)
    options.setdefault("key", _ec_key())
    options.setdefault("now", NOW)
    subject = options.pop("subject", "CN=%s, O=Contoso, C=US" % names[0])
    return pki.make_leaf(subject, authorities()[1], sans=list(names), **options)


def enterprise_cert(*names, **options) -> pki.Issued:
    names = names or (HYBRID_NAME,)
    options.setdefault("key", _ec_key())
    options.setdefault("now", NOW)
    subject = options.pop("subject", "CN=%s, O=Contoso IT" % names[0])
    return pki.make_leaf(subject, authorities()[2], sans=list(names), **options)


def self_signed_cert(*names, **options) -> pki.Issued:
    names = names or (HYBRID_NAME,)
    options.setdefault("key", _ec_key())
    options.setdefault("now", NOW)
    return pki.make_leaf("CN=%s" % names[0], None, sans=list(names), **options)


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tls_name(issued: pki.Issued) -> str:
    return "<I>%s<S>%s" % (issued.issuer, issued.subject)


@dataclass
class Installed:
    """A certificate in the server's store with Exchange's bookkeeping, and the chain Windows builds."""

    issued: pki.Issued
    services: str = "SMTP"
    friendly_name: str | None = None
    has_private_key: bool = True
    status: str = "Valid"
    root_ca_type: str = "ThirdParty"
    chain: tuple = ()  # the issuers the server holds, leaf's issuer first

    def to_object(self) -> dict:
        issued = self.issued
        key = issued.cert.public_key()
        return {
            "Thumbprint": issued.thumbprint,
            "Subject": issued.subject,
            "Issuer": issued.issuer,
            "FriendlyName": self.friendly_name if self.friendly_name is not None else issued.subject,
            "SerialNumber": "%X" % issued.cert.serial_number,
            "CertificateDomains": issued.dns_names,
            "Services": self.services,
            "Status": self.status,
            "RootCAType": self.root_ca_type,
            "IsSelfSigned": issued.is_self_signed,
            "HasPrivateKey": self.has_private_key,
            "NotBefore": _iso(issued.not_before),
            "NotAfter": _iso(issued.not_after),
            "PublicKeySize": getattr(key, "key_size", None),
            "RawData": base64.b64encode(issued.der).decode("ascii"),
        }

    def chain_object(self) -> dict:
        links = [self.issued] + list(self.chain)
        return {
            "Thumbprint": self.issued.thumbprint,
            "ChainThumbprints": [link.thumbprint for link in links],
            "ChainRawData": [base64.b64encode(link.der).decode("ascii") for link in links],
            "ChainStatus": "NoError",
        }


def public_chain():
    public_root, public_ca = authorities()[:2]
    return (public_ca, public_root)


@dataclass
class Server:
    name: str = "EX01"
    certificates: list = field(default_factory=list)
    internal_transport: str | None = None
    send_connectors: list = field(default_factory=list)
    receive_connectors: list = field(default_factory=list)
    hybrid: dict | None = None
    events: list = field(default_factory=list)
    queues: list = field(default_factory=list)
    # Get-HybridmailTlsState: EccCertificateSupport is the registry half of ECC support (_model.ecc_support).
    tls: dict | None = field(default_factory=lambda: {"Tls12ClientEnabled": True, "Tls12ServerEnabled": True, "StrongCryptoNet4": True,
                                                      "EccCertificateSupport": True})
    failures: dict = field(default_factory=dict)  # call id -> error object
    version: str = "Version 15.2 (Build 2562.17)"  # Get-ExchangeServer AdminDisplayVersion: Exchange Server SE
    # Get-SettingOverride's answer: this world's certificates have EC keys, so its Exchange has ECC support on
    # (_model.ecc_support: CSS-Exchange HealthChecker's override and registry value); [] = off, None = the read failed.
    setting_overrides: list | None = field(default_factory=lambda: [
        {"Name": "EnableECCCertificateSupport", "ComponentName": "Global", "SectionName": "ECCCertificateSupport",
         "Parameters": ["Enabled=true"], "Server": [], "Status": "Accepted"}])

    @property
    def fqdn(self) -> str:
        return "%s.%s" % (self.name.lower(), DOMAIN)

    def find(self, thumbprint: str) -> Installed:
        return next(item for item in self.certificates if item.issued.thumbprint == thumbprint)

    def response(self) -> dict:
        def ok(call_id, objects):
            if call_id in self.failures:
                return {"id": call_id, "ok": False, "error": self.failures[call_id]}
            return {"id": call_id, "ok": True, "objects": objects}

        return {
            "version": 1,
            "host": self.name,
            "calls": [
                ok("host", [{"ComputerName": self.name, "Fqdn": self.fqdn, "Domain": DOMAIN, "PowerShellVersion": "5.1.17763.1",
                             "OSVersion": "10.0.17763", "Culture": "en-US"}]),
                ok("server", [{"Name": self.name, "Fqdn": self.fqdn, "AdminDisplayVersion": self.version,
                               "ServerRole": "Mailbox", "Edition": "Standard", "IsEdgeServer": False, "Site": "contoso.com/Sites/HQ"}]),
                ok("transport", [{"Name": self.name, "InternalTransportCertificateThumbprint": self.internal_transport or ""}]),
                ok("certificates", [item.to_object() for item in self.certificates]),
                ok("chains", [item.chain_object() for item in self.certificates]),
                ok("send_connectors", copy.deepcopy(self.send_connectors)),
                ok("receive_connectors", copy.deepcopy(self.receive_connectors)),
                ok("hybrid", [copy.deepcopy(self.hybrid)] if self.hybrid is not None else []),
                ok("queues", copy.deepcopy(self.queues)),
                ok("tls", [dict(self.tls)] if self.tls is not None else []),
                ok("events", copy.deepcopy(self.events)),
                ok("setting_overrides", copy.deepcopy(self.setting_overrides)) if self.setting_overrides is not None else
                {"id": "setting_overrides", "ok": False, "error": {
                    "type": "ManagementObjectNotFoundException", "category": "ReadError", "message": "read failed", "fqid": "X"}},
            ],
        }

    def facts(self, now: datetime.datetime = NOW, min_key_bits: int = 2048) -> dict:
        calls = _snapshot.audit_calls()
        snapshot = _snapshot.ServerSnapshot.from_response(self.response(), self.name, calls)
        verdicts = _facts.evaluate(snapshot, trust_store(), now, min_key_bits)
        # As certificate_info builds them: with what enforce (smtp_certificate's defaults) would clear.
        return _autofix.annotate(_facts.server_facts(snapshot, verdicts, now), snapshot, verdicts, now)


def send_connector(name: str, sources, hybrid_cert: pki.Issued | None, **overrides) -> dict:
    connector = {
        "Identity": "Outbound to Office 365 - %s" % name,
        "Name": "Outbound to Office 365 - %s" % name,
        "Enabled": True,
        "Fqdn": HYBRID_NAME,
        "AddressSpaces": [CLOUD_SPACE],
        "SourceTransportServers": list(sources),
        "SmartHosts": [],
        "DNSRoutingEnabled": True,
        "CloudServicesMailEnabled": True,
        "RequireTLS": True,
        "TlsAuthLevel": "DomainValidation",
        "TlsDomain": "mail.protection.outlook.com",
        "TlsCertificateName": tls_name(hybrid_cert) if hybrid_cert is not None else None,
    }
    connector.update(overrides)
    return connector


def receive_connector(server: str, hybrid_cert: pki.Issued | None, **overrides) -> dict:
    connector = {
        "Identity": "%s\\Default Frontend %s" % (server, server),
        "Name": "Default Frontend %s" % server,
        "Server": server,
        "Enabled": True,
        "Fqdn": "%s.%s" % (server.lower(), DOMAIN),
        "Bindings": ["0.0.0.0:25", "[::]:25"],
        "TransportRole": "FrontendTransport",
        "RequireTLS": False,
        "AuthMechanism": "Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer",
        "TlsCertificateName": tls_name(hybrid_cert) if hybrid_cert is not None else None,
        "TlsDomainCapabilities": ["mail.protection.outlook.com:AcceptCloudServicesMail"],
    }
    connector.update(overrides)
    return connector


def hybrid_configuration(servers, hybrid_cert: pki.Issued | None) -> dict:
    return {
        "TlsCertificateName": tls_name(hybrid_cert) if hybrid_cert is not None else None,
        "SendingTransportServers": list(servers),
        "ReceivingTransportServers": list(servers),
        "EdgeTransportServers": [],
        "Domains": [DOMAIN],
        "OnPremisesSmartHost": HYBRID_NAME,
        "Features": HCW_FEATURES,
    }


def event_2004(message: str, when: datetime.datetime = NOW - datetime.timedelta(hours=2)) -> dict:
    return {"Id": 2004, "ProviderName": "MSExchangeTransport", "TimeCreated": _iso(when), "LevelDisplayName": "Information",
            "MachineName": "EX01.contoso.com", "Message": message}


UNTRUSTED_ROOT_TEXT = (
    "Send connector Outbound to Office 365: The message delivery was not successful. The message with message ID <id> was "
    "acknowledged with SMTP response 454 4.7.0 Unable to establish an appropriate TLS channel: UntrustedRoot: Access Denied"
)


def cloud_queue(**overrides) -> dict:
    queue = {
        "Identity": "EX01\\4",
        "DeliveryType": "SmartHostConnectorDelivery",
        "NextHopDomain": "contoso.mail.onmicrosoft.com",
        "NextHopConnector": "00000000-0000-0000-0000-000000000000",
        "Status": "Ready",
        "MessageCount": 0,
        "LastError": None,
        "LastRetryTime": None,
        "NextRetryTime": None,
    }
    queue.update(overrides)
    return queue


@functools.lru_cache(maxsize=None)
def _shared_hybrid_cert() -> pki.Issued:
    return public_cert(HYBRID_NAME, "autodiscover." + DOMAIN, key=pki.make_key("ec", 256, 21))


def healthy(name: str = "EX01", hybrid_cert: pki.Issued | None = None, servers=None) -> Server:
    """A server as the Hybrid Configuration Wizard leaves it: a public SAN certificate for mail.contoso.com pinned on
    the send and receive connectors and in the hybrid configuration, the self-signed internal transport
    certificate, the Auth certificate. No finding applies."""
    hybrid_cert = hybrid_cert or _shared_hybrid_cert()
    servers = servers or [name]
    fqdn = "%s.%s" % (name.lower(), DOMAIN)
    internal = pki.make_exchange_self_signed(name, fqdn, now=NOW, key=_ec_key())
    auth = pki.make_exchange_auth_certificate(now=NOW, key=_ec_key())
    server = Server(name=name)
    server.certificates = [
        Installed(hybrid_cert, services="IIS, SMTP", friendly_name="Contoso hybrid 2026", chain=public_chain()),
        Installed(internal, services="IMAP, POP, IIS, SMTP", friendly_name="Microsoft Exchange", root_ca_type="Registry"),
        Installed(auth, services="SMTP", friendly_name="Microsoft Exchange Server Auth Certificate", root_ca_type="None"),
    ]
    server.internal_transport = internal.thumbprint
    server.send_connectors = [send_connector("Contoso", servers, hybrid_cert)]
    server.receive_connectors = [receive_connector(name, hybrid_cert)]
    server.hybrid = hybrid_configuration(servers, hybrid_cert)
    return server


def kb2888788(name: str = "EX01") -> Server:
    """The incident: an enterprise-CA certificate for mail.contoso.com also enabled for SMTP, nothing pinned on the
    send connector, Event 2004 in the log and the queue to Exchange Online retrying."""
    server = healthy(name)
    server.certificates.append(Installed(enterprise_cert(HYBRID_NAME), services="IIS, SMTP", friendly_name="Contoso internal web",
                                         root_ca_type="Enterprise", chain=(authorities()[2],)))
    server.send_connectors[0]["TlsCertificateName"] = None
    server.events = [event_2004(UNTRUSTED_ROOT_TEXT)]
    server.queues = [cloud_queue(Status="Retry", MessageCount=12,
                                 LastError="454 4.7.0 Unable to establish an appropriate TLS channel: UntrustedRoot: Access Denied",
                                 LastRetryTime=_iso(NOW - datetime.timedelta(minutes=3)))]
    return server

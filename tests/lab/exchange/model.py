"""State records of the simulated organisation: CAs, certificates, connectors, queues, events.

Organisation-wide objects (send connectors, hybrid configuration) live on the Organization and are
shared by its servers, as they are in Active Directory: a Set-SendConnector run on one server is
seen by all of them. Per-server state (certificate stores, receive connectors, queue, event log)
lives on the ExchangeServer (server.py).
"""

from __future__ import annotations

import datetime
import threading
import uuid
from dataclasses import dataclass, field

from cryptography.x509.oid import NameOID

from tests.lab import pki

CLOUD_TLS_DOMAIN = "mail.protection.outlook.com"
CLOUD_CAPABILITY = CLOUD_TLS_DOMAIN + ":AcceptCloudServicesMail"
HCW_FEATURES = ["FreeBusy", "MoveMailbox", "Mailtips", "MessageTracking", "OwaRedirection", "OnlineArchive",
                "SecureMail", "Photos"]


@dataclass
class Authority:
    """A CA the fleet knows. trust: 'public' (the trust bundle: Microsoft Trusted Root Program stand-in),
    'enterprise' (an internal AD CS root, trusted by domain members through Group Policy) or 'none'."""

    name: str
    issued: pki.Issued
    parent: str | None
    trust: str
    aia: bool  # Windows may fetch it via AIA when a server lacks it (used for Exchange's Status only)

    @property
    def is_root(self) -> bool:
        return self.parent is None


@dataclass
class InstalledCertificate:
    """A certificate in a server's Cert:\\LocalMachine\\My with Exchange's bookkeeping."""

    issued: pki.Issued
    friendly_name: str
    services: int  # flags Exchange stores; IIS is derived from the IIS bindings (see server.services_of)
    has_private_key: bool = True
    source: str = ""  # the fleet's certificate id, for status()
    status_override: str | None = None
    root_ca_type_override: str | None = None

    @property
    def thumbprint(self) -> str:
        return self.issued.thumbprint

    @property
    def domains(self) -> list:
        """CertificateDomains: the SAN DNS names, else the subject CN when it is a host name."""
        names = self.issued.dns_names
        if names:
            return list(names)
        common_names = self.issued.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [attr.value for attr in common_names if attr.value and " " not in attr.value]

    def matches_name(self, fqdn: str) -> bool:
        fqdn = fqdn.lower().rstrip(".")
        for name in self.domains:
            name = name.lower()
            if name == fqdn:
                return True
            if name.startswith("*.") and "." in fqdn and fqdn.split(".", 1)[1] == name[2:]:
                return True
        return False

    def tls_name(self) -> str:
        return format_tls_certificate_name(self.issued.issuer, self.issued.subject)


def format_tls_certificate_name(issuer: str, subject: str) -> str:
    return "<I>%s<S>%s" % (issuer, subject)


def parse_tls_certificate_name(value: str) -> tuple:
    """'<I>issuer<S>subject' -> (issuer, subject), normalised as Exchange stores it. ValueError if invalid."""
    if not isinstance(value, str) or not value.startswith("<I>") or "<S>" not in value:
        raise ValueError(value)
    issuer, _separator, subject = value[3:].partition("<S>")
    if not issuer.strip() or not subject.strip():
        raise ValueError(value)
    return pki.normalize_name(issuer), pki.normalize_name(subject)


def same_tls_name(value: str | None, certificate: InstalledCertificate) -> bool:
    if not value:
        return False
    issuer, subject = parse_tls_certificate_name(value)
    return (issuer.casefold(), subject.casefold()) == (
        certificate.issued.issuer.casefold(),
        certificate.issued.subject.casefold(),
    )


@dataclass
class SendConnector:
    name: str
    address_spaces: list
    source_servers: list
    fqdn: str | None = None
    enabled: bool = True
    smart_hosts: list = field(default_factory=list)
    dns_routing_enabled: bool = True
    cloud_services_mail_enabled: bool = False
    require_tls: bool = False
    tls_auth_level: str | None = None
    tls_domain: str | None = None
    tls_certificate_name: str | None = None
    guid: str = ""

    def __post_init__(self):
        if not self.guid:
            self.guid = str(uuid.uuid5(uuid.NAMESPACE_URL, "hybridmail-lab/send-connector/" + self.name))

    @property
    def is_cloud(self) -> bool:
        """The connector toward Exchange Online (what the Hybrid Configuration Wizard creates)."""
        return self.cloud_services_mail_enabled or any(
            space.split(":", 1)[-1].split(";", 1)[0].lower().endswith(".mail.onmicrosoft.com")
            for space in self.address_spaces
        )

    def to_object(self) -> dict:
        return {
            "Identity": self.name,
            "Name": self.name,
            "Guid": self.guid,
            "Enabled": self.enabled,
            "Fqdn": self.fqdn,
            "AddressSpaces": list(self.address_spaces),
            "SourceTransportServers": list(self.source_servers),
            "SmartHosts": list(self.smart_hosts),
            "DNSRoutingEnabled": self.dns_routing_enabled,
            "CloudServicesMailEnabled": self.cloud_services_mail_enabled,
            "RequireTLS": self.require_tls,
            "TlsAuthLevel": self.tls_auth_level,
            "TlsDomain": self.tls_domain,
            "TlsCertificateName": self.tls_certificate_name,
            "Port": 25,
            "MaxMessageSize": "35 MB (36,700,160 bytes)",
        }


@dataclass
class ReceiveConnector:
    server: str
    name: str
    bindings: list
    transport_role: str
    auth_mechanism: str
    fqdn: str
    enabled: bool = True
    require_tls: bool = False
    tls_certificate_name: str | None = None
    tls_domain_capabilities: list = field(default_factory=list)

    @property
    def identity(self) -> str:
        return "%s\\%s" % (self.server, self.name)

    def to_object(self) -> dict:
        return {
            "Identity": self.identity,
            "Name": self.name,
            "Server": self.server,
            "Enabled": self.enabled,
            "Fqdn": self.fqdn,
            "Bindings": list(self.bindings),
            "TransportRole": self.transport_role,
            "RequireTLS": self.require_tls,
            "AuthMechanism": self.auth_mechanism,
            "TlsCertificateName": self.tls_certificate_name,
            "TlsDomainCapabilities": list(self.tls_domain_capabilities),
        }


@dataclass
class HybridConfiguration:
    tls_certificate_name: str | None
    sending_servers: list
    receiving_servers: list
    edge_servers: list
    domains: list
    on_premises_smart_host: str
    features: list = field(default_factory=lambda: list(HCW_FEATURES))

    def to_object(self) -> dict:
        return {
            "Identity": "Hybrid Configuration",
            "Name": "Hybrid Configuration",
            "TlsCertificateName": self.tls_certificate_name,
            "SendingTransportServers": list(self.sending_servers),
            "ReceivingTransportServers": list(self.receiving_servers),
            "EdgeTransportServers": list(self.edge_servers),
            "Domains": list(self.domains),
            "OnPremisesSmartHost": self.on_premises_smart_host,
            "Features": list(self.features),
        }


@dataclass
class Organization:
    name: str
    domain: str
    tenant: str
    site: str
    send_connectors: list
    hybrid: HybridConfiguration | None
    authorities: dict  # name -> Authority
    # One lock for everything of the organisation: servers share connectors, and a mail-flow
    # attempt after a connector change touches every server. Requests take milliseconds.
    lock: threading.RLock = field(default_factory=threading.RLock)
    servers: dict = field(default_factory=dict)  # name -> ExchangeServer, filled by the fleet

    @property
    def next_hop_domain(self) -> str:
        return "%s.mail.onmicrosoft.com" % self.tenant

    @property
    def domain_controller(self) -> str:
        return "DC01.%s" % self.domain

    @property
    def site_identity(self) -> str:
        return "%s/Configuration/Sites/%s" % (self.domain, self.site)

    def public_roots(self) -> list:
        return [a for a in self.authorities.values() if a.is_root and a.trust == "public"]

    def find_send_connector(self, identity: str) -> list:
        key = str(identity).strip().lower()
        return [c for c in self.send_connectors if key in (c.name.lower(), c.guid.lower())]


@dataclass
class EventRecord:
    record_id: int
    event_id: int
    provider: str
    level: str  # Information / Warning / Error (rendered in the server's language on output)
    time: datetime.datetime
    message: str
    log_name: str = "Application"
    task: str = ""


@dataclass
class QueueState:
    """The delivery queue toward Exchange Online (one per cloud send connector used by the server)."""

    identity: str
    connector: SendConnector | None
    message_count: int = 0
    status: str = "Ready"
    last_error: str | None = None
    last_retry_time: datetime.datetime | None = None
    next_retry_time: datetime.datetime | None = None


@dataclass
class TlsSettings:
    """SCHANNEL/.NET registry values; None = value absent (Windows Server 2016+ default: enabled)."""

    tls12_client: bool | None = None
    tls12_server: bool | None = None
    strong_crypto_net4: bool | None = None

    @property
    def client_enabled(self) -> bool:
        return self.tls12_client is not False


@dataclass
class Fault:
    cmdlet: str
    message: str | None
    after: int
    times: int  # 0 = until cleared
    passed: int = 0
    fired: int = 0

    def should_fire(self) -> bool:
        """Counts one call of the cmdlet; True when this call must fail."""
        if self.passed < self.after:
            self.passed += 1
            return False
        if self.times and self.fired >= self.times:
            return False
        self.fired += 1
        return True

    def to_json(self) -> dict:
        return {"cmdlet": self.cmdlet, "message": self.message, "after": self.after, "times": self.times,
                "passed": self.passed, "fired": self.fired}

"""Fleet files -> a simulated Exchange organisation (schema: tests/lab/fleets/README.md).

Dates in a fleet file are relative ("+20d", "-1y") to the start of the current UTC day, so the same
file gives the same certificates (same thumbprints) all day long; the servers' clock is real time.
"""

from __future__ import annotations

import datetime
import os
import zlib
from collections import OrderedDict

import yaml

from tests.lab import pki
from tests.lab.exchange import mailflow, rbac
from tests.lab.exchange import services as svc
from tests.lab.exchange import texts
from tests.lab.exchange.model import (
    CLOUD_CAPABILITY,
    CLOUD_TLS_DOMAIN,
    Authority,
    HybridConfiguration,
    InstalledCertificate,
    Organization,
    ReceiveConnector,
    SendConnector,
    TlsSettings,
    format_tls_certificate_name,
    parse_tls_certificate_name,
)
from tests.lab.exchange.server import LANGUAGE_MODES, VERSIONS, ExchangeServer

# Key pool slots (tests/lab/pki.py): authorities 0-5, then 10+; leaf certificates share 6-9.
LEAF_KEY_SLOTS = (6, 7, 8, 9)
ROOT_CA_TYPES = ("ThirdParty", "Enterprise", "GroupPolicy", "Registry", "None", "Unknown")
STATUSES = ("Valid", "Untrusted", "Revoked", "DateInvalid", "Invalid", "RevocationCheckFailure",
            "PendingRequest", "Unknown")


class FleetError(ValueError):
    """A fleet file that does not follow the schema; the message names the offending place."""


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _default_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _dc_name(domain: str) -> str:
    return ", ".join("DC=%s" % part for part in domain.split("."))


def _default_authorities(org_name: str, domain: str) -> dict:
    short = org_name.split()[0] if org_name else domain.split(".")[0].title()
    return {
        "public_root": {
            "subject": "CN=Hybridmail Lab Public Root CA, O=Hybridmail Lab Trust Services, C=US",
            "trust": "public", "not_before": "-8y", "not_after": "+17y",
        },
        "public_ca": {
            "subject": "CN=Hybridmail Lab Public TLS CA 2025, O=Hybridmail Lab Trust Services, C=US",
            "issuer": "public_root", "not_before": "-400d", "not_after": "+8y",
        },
        "enterprise_root": {
            "subject": "CN=%s Enterprise Root CA, %s" % (short, _dc_name(domain)),
            "trust": "enterprise", "not_before": "-6y", "not_after": "+14y",
        },
        "enterprise_ca": {
            "subject": "CN=%s Issuing CA 01, %s" % (short, _dc_name(domain)),
            "issuer": "enterprise_root", "not_before": "-6y", "not_after": "+8y",
        },
    }


def _receive_connector_defaults(server_name: str, fqdn: str, edge: bool) -> list:
    full = "Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer"
    if edge:
        return [ReceiveConnector(server_name, "Default internal receive connector %s" % server_name,
                                 ["0.0.0.0:25", "[::]:25"], "FrontendTransport", "Tls, ExchangeServer", fqdn)]
    return [
        ReceiveConnector(server_name, "Default %s" % server_name, ["0.0.0.0:2525", "[::]:2525"], "HubTransport",
                         full, fqdn),
        ReceiveConnector(server_name, "Client Proxy %s" % server_name, ["0.0.0.0:465", "[::]:465"],
                         "HubTransport", full, fqdn),
        ReceiveConnector(server_name, "Default Frontend %s" % server_name, ["0.0.0.0:25", "[::]:25"],
                         "FrontendTransport", full, fqdn),
        ReceiveConnector(server_name, "Outbound Proxy Frontend %s" % server_name, ["0.0.0.0:717", "[::]:717"],
                         "FrontendTransport", full, fqdn),
        ReceiveConnector(server_name, "Client Frontend %s" % server_name, ["0.0.0.0:587", "[::]:587"],
                         "FrontendTransport", "Tls, Integrated, BasicAuth, BasicAuthRequireTLS", fqdn),
    ]


class _Builder:
    """Turns fleet data into an Organization with servers; one instance per load."""

    def __init__(self, data: dict, clock):
        if not isinstance(data, dict):
            raise FleetError("a fleet file is a mapping with organization/servers")
        self.data = data
        self.clock = clock
        now = clock().astimezone(datetime.timezone.utc)
        self.anchor = now.replace(hour=0, minute=0, second=0, microsecond=0)
        self.issued_cache: dict = {}  # certificate id -> pki.Issued (one PFX imported on many servers)
        self.authority_by_subject: dict = {}

    # ------------------------------------------------------------------------------ helpers

    def when(self, value, where: str) -> datetime.datetime:
        try:
            return pki.parse_when(value, self.anchor)
        except ValueError as exc:
            raise FleetError("%s: %s" % (where, exc)) from None

    def key_spec(self, value, where: str) -> tuple:
        try:
            return pki.parse_key_spec(value or "rsa2048")
        except ValueError as exc:
            raise FleetError("%s: %s" % (where, exc)) from None

    # -------------------------------------------------------------------------- authorities

    def authorities(self, org_name: str, domain: str) -> dict:
        definitions = _default_authorities(org_name, domain)
        for name, definition in (self.data.get("authorities") or {}).items():
            definitions[name] = dict(definitions.get(name, {}), **(definition or {}))
        built: dict = {}
        pending = list(definitions)
        while pending:
            progressed = False
            for name in list(pending):
                definition = definitions[name]
                parent = definition.get("issuer")
                if parent and parent not in built:
                    if parent not in definitions:
                        raise FleetError("authorities.%s: unknown issuer %r" % (name, parent))
                    continue
                built[name] = self.authority(name, definition, built.get(parent) if parent else None, len(built))
                pending.remove(name)
                progressed = True
            if not progressed:
                raise FleetError("authorities: issuer cycle among %s" % ", ".join(pending))
        return built

    def authority(self, name: str, definition: dict, parent: Authority | None, index: int) -> Authority:
        where = "authorities.%s" % name
        if "subject" not in definition:
            raise FleetError("%s: subject is required" % where)
        kind, size = self.key_spec(definition.get("key"), where)
        trust = definition.get("trust", parent.trust if parent else "none")  # intermediates inherit
        if trust not in ("public", "enterprise", "none"):
            raise FleetError("%s: trust must be public, enterprise or none" % where)
        issued = pki.make_ca(
            definition["subject"],
            parent.issued if parent else None,
            key_kind=kind,
            key_size=size,
            key_slot=index if index < 6 else 10 + index,
            not_before=self.when(definition.get("not_before", "-5y"), where + ".not_before"),
            not_after=self.when(definition.get("not_after", "+10y"), where + ".not_after"),
            now=self.anchor,
            hash=definition.get("hash", "sha256"),
        )
        authority = Authority(name, issued, parent.name if parent else None, trust,
                              bool(definition.get("aia", trust == "public")))
        self.authority_by_subject[issued.cert.subject] = authority
        return authority

    # ------------------------------------------------------------------------- certificates

    def certificate(self, cert_id: str, definition: dict, authorities: dict, where: str) -> pki.Issued:
        if cert_id in self.issued_cache:
            return self.issued_cache[cert_id]
        if not isinstance(definition, dict) or "subject" not in definition:
            raise FleetError("%s: a certificate needs at least a subject" % where)
        issuer_name = definition.get("issuer", "self")
        if issuer_name in (None, "self"):
            issuer = None
        elif issuer_name in authorities:
            issuer = authorities[issuer_name].issued
        else:
            raise FleetError("%s: unknown issuer %r (an authority name or 'self')" % (where, issuer_name))
        kind, size = self.key_spec(definition.get("key"), where)
        slot = LEAF_KEY_SLOTS[_stable_hash(cert_id) % len(LEAF_KEY_SLOTS)] if kind == "rsa" else _stable_hash(cert_id)
        try:
            issued = pki.make_leaf(
                definition["subject"],
                issuer,
                sans=definition.get("sans"),
                not_before=self.when(definition.get("not_before", "-30d"), where + ".not_before"),
                not_after=self.when(definition.get("not_after", "+335d"), where + ".not_after"),
                now=self.anchor,
                key_kind=kind,
                key_size=size,
                key_slot=slot,
                hash=definition.get("hash", "sha256"),
                eku=definition.get("eku", ("serverAuth",)),
            )
        except ValueError as exc:
            raise FleetError("%s: %s" % (where, exc)) from None
        self.issued_cache[cert_id] = issued
        return issued

    def tls_name(self, value, authorities: dict, where: str) -> str | None:
        """A TlsCertificateName given as a certificate id or literally ('<I>...<S>...')."""
        if value in (None, ""):
            return None
        if isinstance(value, str) and value.startswith("<I>"):
            try:
                issuer, subject = parse_tls_certificate_name(value)
            except ValueError:
                raise FleetError("%s: %r is not <I>issuer<S>subject" % (where, value)) from None
            return format_tls_certificate_name(issuer, subject)
        definitions = self.data.get("certificates") or {}
        if value not in definitions:
            raise FleetError("%s: unknown certificate id %r" % (where, value))
        issued = self.certificate(value, definitions[value], authorities, "certificates.%s" % value)
        return format_tls_certificate_name(issued.issuer, issued.subject)

    # ------------------------------------------------------------------------------- build

    def build(self):
        org_data = self.data.get("organization") or {}
        name = org_data.get("name", "Contoso Ltd")
        domain = org_data.get("domain", "contoso.com")
        tenant = org_data.get("tenant", domain.split(".")[0])
        authorities = self.authorities(name, domain)
        server_entries = self.server_entries()
        mailbox_names = [entry["name"] for entry in server_entries if entry["role"] == "mailbox"]
        edge_names = [entry["name"] for entry in server_entries if entry["role"] == "edge"]
        hybrid_data = org_data.get("hybrid", {})  # absent: default hybrid; null: none
        smart_host = (hybrid_data or {}).get("on_premises_smart_host", "mail.%s" % domain)
        connectors = self.send_connectors(org_data, hybrid_data, smart_host, tenant, mailbox_names, edge_names,
                                          authorities)
        hybrid = None
        if hybrid_data is not None:
            cloud_sources = [s for c in connectors if c.is_cloud for s in c.source_servers]
            sending = hybrid_data.get("sending_servers") or [s for s in cloud_sources if s in mailbox_names]
            hybrid = HybridConfiguration(
                tls_certificate_name=self.tls_name(hybrid_data.get("tls_certificate"), authorities,
                                                   "organization.hybrid.tls_certificate"),
                sending_servers=list(sending),
                receiving_servers=list(hybrid_data.get("receiving_servers") or sending),
                edge_servers=list(hybrid_data.get("edge_servers") or [s for s in cloud_sources if s in edge_names]),
                domains=list(hybrid_data.get("domains") or [domain]),
                on_premises_smart_host=smart_host,
            )
            if "features" in hybrid_data:
                hybrid.features = list(hybrid_data["features"])
        org = Organization(name=name, domain=domain, tenant=tenant,
                           site=org_data.get("site", "Default-First-Site-Name"), send_connectors=connectors,
                           hybrid=hybrid, authorities=authorities)
        auth_certificate = pki.make_exchange_auth_certificate(
            not_before=self.when(org_data.get("auth_certificate_not_before", "-700d"), "organization"),
            now=self.anchor, key_slot=LEAF_KEY_SLOTS[0],
        )
        for index, entry in enumerate(server_entries):
            server = self.server(org, entry, index, authorities, auth_certificate)
            org.servers[server.name] = server
        return org

    def server_entries(self) -> list:
        defaults = self.data.get("defaults") or {}
        entries = []
        seen = set()
        for index, raw in enumerate(self.data.get("servers") or []):
            if not isinstance(raw, dict) or not raw.get("name"):
                raise FleetError("servers[%d]: every server needs a name" % index)
            entry = dict(defaults, **raw)
            entry["role"] = str(entry.get("role", "mailbox")).lower()
            if entry["role"] not in ("mailbox", "edge"):
                raise FleetError("servers[%d] (%s): role must be mailbox or edge" % (index, entry["name"]))
            if entry["name"].upper() in seen:
                raise FleetError("servers[%d]: duplicate server name %s" % (index, entry["name"]))
            seen.add(entry["name"].upper())
            entries.append(entry)
        if not entries:
            raise FleetError("servers: a fleet needs at least one server")
        return entries

    def send_connectors(self, org_data, hybrid_data, smart_host, tenant, mailbox_names, edge_names, authorities):
        definitions = org_data.get("send_connectors")
        if definitions is None:
            definitions = [{"name": "Outbound to Office 365", "cloud": True,
                            "tls_certificate": (hybrid_data or {}).get("tls_certificate")}]
        connectors = []
        for index, definition in enumerate(definitions):
            where = "organization.send_connectors[%d]" % index
            if not definition.get("name"):
                raise FleetError("%s: name is required" % where)
            cloud = bool(definition.get("cloud", False))
            sources = definition.get("source_servers", "all")
            if sources == "all":
                sources = list(mailbox_names)
            elif sources == "edge":
                sources = list(edge_names)
            unknown = [s for s in sources if s not in mailbox_names + edge_names]
            if unknown:
                raise FleetError("%s: unknown source servers %s" % (where, ", ".join(unknown)))
            connectors.append(
                SendConnector(
                    name=definition["name"],
                    address_spaces=list(definition.get("address_spaces")
                                        or (["SMTP:%s.mail.onmicrosoft.com;1" % tenant] if cloud else ["SMTP:*;1"])),
                    source_servers=list(sources),
                    fqdn=definition.get("fqdn", smart_host if cloud else None),
                    enabled=bool(definition.get("enabled", True)),
                    smart_hosts=list(definition.get("smart_hosts") or []),
                    dns_routing_enabled=not definition.get("smart_hosts"),
                    cloud_services_mail_enabled=cloud,
                    require_tls=bool(definition.get("require_tls", cloud)),
                    tls_auth_level=definition.get("tls_auth_level", "DomainValidation" if cloud else None),
                    tls_domain=definition.get("tls_domain", CLOUD_TLS_DOMAIN if cloud else None),
                    tls_certificate_name=self.tls_name(definition.get("tls_certificate"), authorities,
                                                       where + ".tls_certificate"),
                )
            )
        return connectors

    def server(self, org, entry, index, authorities, auth_certificate) -> ExchangeServer:
        name = entry["name"]
        where = "servers[%d] (%s)" % (index, name)
        edge = entry["role"] == "edge"
        version = str(entry.get("version", "2019"))
        version = "SE" if version.lower() == "se" else version
        if version not in VERSIONS:
            raise FleetError("%s: version must be one of %s" % (where, ", ".join(VERSIONS)))
        locale = entry.get("locale", "en")
        if locale not in texts.LOCALES:
            raise FleetError("%s: locale must be one of %s" % (where, ", ".join(texts.LOCALES)))
        behavior = entry.get("enable_behavior", "additive")
        if behavior not in ("additive", "replace"):
            raise FleetError("%s: enable_behavior must be additive or replace" % where)
        tls = entry.get("tls") or {}
        language_mode = entry.get("language_mode", "FullLanguage")
        if language_mode not in LANGUAGE_MODES:
            raise FleetError("%s: language_mode must be one of %s" % (where, ", ".join(LANGUAGE_MODES)))
        delegation = entry.get("credential_delegation", True)
        if not isinstance(delegation, bool):
            raise FleetError("%s: credential_delegation must be true or false" % where)
        delay = entry.get("replication_delay") or {}
        if not isinstance(delay, dict) or not isinstance(delay.get("reads", 0), int) or delay.get("reads", 0) < 0:
            raise FleetError("%s: replication_delay must be {reads: <a number of reads, 0 or more>}" % where)
        session = entry.get("session") or {}
        if not isinstance(session, dict) or session.get("auto", "snapin") not in ("snapin", "remote_exchange"):
            raise FleetError("%s: session.auto must be snapin or remote_exchange" % where)
        if not isinstance(session.get("snapin_certificate_tasks", True), bool):
            raise FleetError("%s: session.snapin_certificate_tasks must be true or false" % where)
        if edge and session.get("auto") == "remote_exchange":
            raise FleetError("%s: an Edge Transport server has no remote Exchange PowerShell (session.auto)" % where)
        ecc_support = entry.get("ecc_support", False)
        if not isinstance(ecc_support, bool):
            raise FleetError("%s: ecc_support must be true or false" % where)
        server = ExchangeServer(
            org=org,
            name=name,
            fqdn=entry.get("fqdn", "%s.%s" % (name.lower(), org.domain)),
            domain=entry.get("domain", "WORKGROUP" if edge else org.domain),
            role="Edge" if edge else "Mailbox",
            version=version,
            locale=locale,
            enable_behavior=behavior,
            tls=TlsSettings(tls.get("tls12_client"), tls.get("tls12_server"), tls.get("strong_crypto_net4")),
            clock=self.clock,
            edition=entry.get("edition", "Standard"),
            session=session,
            language_mode=language_mode,
            ecc_support=ecc_support,
            credential_delegation=delegation,
            replication_reads=delay.get("reads", 0),
            initial_messages=int((entry.get("queue") or {}).get("messages", 0)),
        )
        try:
            server.rbac = rbac.settings((self.data.get("organization") or {}).get("rbac"), entry.get("rbac"), where)
        except rbac.RbacError as exc:
            raise FleetError(str(exc)) from None
        self.install_exchange_certificates(server, entry, auth_certificate, where)
        installed_issuers = self.install_certificates(server, entry, authorities, where)
        self.fill_ca_stores(server, entry, authorities, installed_issuers, where)
        self.receive_connectors(server, entry, authorities, where)
        for number, event in enumerate(entry.get("events") or []):
            self.preload_event(server, event, "%s.events[%d]" % (where, number))
        return server

    def install_exchange_certificates(self, server, entry, auth_certificate, where):
        self_signed = entry.get("self_signed", {})
        if self_signed is not False:
            self_signed = self_signed or {}
            issued = pki.make_exchange_self_signed(
                server.name, server.fqdn,
                not_before=self.when(self_signed.get("not_before", "-400d"), where + ".self_signed.not_before"),
                now=self.anchor,
                key_slot=LEAF_KEY_SLOTS[_stable_hash(server.name) % len(LEAF_KEY_SLOTS)],
                hash=self_signed.get("hash", "sha256"),
            )
            services = svc.SMTP if server.is_edge else svc.IMAP | svc.POP | svc.SMTP
            cert = InstalledCertificate(issued, pki.EXCHANGE_SELF_SIGNED_FRIENDLY_NAME, services,
                                        source="exchange_self_signed")
            server.certificates[cert.thumbprint] = cert
            server.root_store[cert.thumbprint] = (issued, "Registry")  # setup trusts it on the server itself
            server.internal_transport_thumbprint = cert.thumbprint
            if not server.is_edge:
                server.web_thumbprint = server.backend_thumbprint = cert.thumbprint
        if not server.is_edge and entry.get("auth_certificate", True):
            # One OAuth certificate for the whole organisation, replicated to every Mailbox server.
            cert = InstalledCertificate(auth_certificate, pki.AUTH_CERTIFICATE_FRIENDLY_NAME, svc.SMTP,
                                        source="exchange_auth", status_override="Valid",
                                        root_ca_type_override="None")
            server.certificates[cert.thumbprint] = cert

    def install_certificates(self, server, entry, authorities, where) -> list:
        definitions = self.data.get("certificates") or {}
        issuers = []
        for number, install in enumerate(entry.get("certificates") or []):
            spot = "%s.certificates[%d]" % (where, number)
            if isinstance(install, str):
                install = {"id": install}
            if "id" in install:
                cert_id = install["id"]
                if cert_id not in definitions:
                    raise FleetError("%s: unknown certificate id %r" % (spot, cert_id))
                definition = dict(definitions[cert_id])
            else:
                cert_id = "%s/%d" % (server.name, number)
                definition = install
            issued = self.certificate(cert_id, definition, authorities, spot)
            try:
                services = svc.parse_services(install.get("services", definition.get("services", "None")))
            except svc.ServicesParseError as exc:
                raise FleetError("%s: unknown service %s" % (spot, exc)) from None
            status = install.get("status")
            root_ca_type = install.get("root_ca_type")
            if status is not None and status not in STATUSES:
                raise FleetError("%s: status must be one of %s" % (spot, ", ".join(STATUSES)))
            if root_ca_type is not None and root_ca_type not in ROOT_CA_TYPES:
                raise FleetError("%s: root_ca_type must be one of %s" % (spot, ", ".join(ROOT_CA_TYPES)))
            cert = InstalledCertificate(
                issued,
                install.get("friendly_name", definition.get("friendly_name") or self.friendly_name(issued)),
                services & ~svc.IIS,
                has_private_key=bool(install.get("has_private_key", True)),
                source=cert_id,
                status_override=status,
                root_ca_type_override=root_ca_type,
            )
            server.certificates[cert.thumbprint] = cert
            if services & svc.IIS and not server.is_edge:
                server.web_thumbprint = cert.thumbprint
            if install.get("internal_transport"):
                server.internal_transport_thumbprint = cert.thumbprint
            if not issued.is_self_signed:
                issuers.append(issued)
            elif install.get("trusted", False):
                server.root_store[cert.thumbprint] = (issued, "Registry")
        return issuers

    @staticmethod
    def friendly_name(issued: pki.Issued) -> str:
        common = issued.subject.split(",")[0].split("=", 1)[-1]
        return "%s %d" % (common, issued.not_after.year)

    def fill_ca_stores(self, server, entry, authorities, installed_issued, where):
        intermediates = entry.get("intermediates", "auto")
        if intermediates == "auto":
            # Importing a PFX with its chain (or Group Policy) puts the issuing CAs there.
            names = []
            for issued in installed_issued:
                authority = self.authority_by_subject.get(issued.cert.issuer)
                while authority is not None and not authority.is_root:
                    if authority.name not in names:
                        names.append(authority.name)
                    authority = authorities.get(authority.parent)
        else:
            names = list(intermediates or [])
        for name in names:
            if name not in authorities:
                raise FleetError("%s.intermediates: unknown authority %r" % (where, name))
            server.intermediate_store[authorities[name].issued.thumbprint] = authorities[name].issued
        roots = entry.get("trusted_roots", "auto")
        if roots == "auto":
            roots = {
                authority.name: "ThirdParty" if authority.trust == "public" else "GroupPolicy"
                for authority in authorities.values()
                if authority.is_root and (authority.trust == "public" or (authority.trust == "enterprise" and not server.is_edge))
            }
        elif isinstance(roots, list):
            roots = {name: None for name in roots}
        for name, root_ca_type in (roots or {}).items():
            authority = authorities.get(name)
            if authority is None:
                raise FleetError("%s.trusted_roots: unknown authority %r" % (where, name))
            root_ca_type = root_ca_type or ("ThirdParty" if authority.trust == "public" else "GroupPolicy")
            if root_ca_type not in ROOT_CA_TYPES:
                raise FleetError("%s.trusted_roots.%s: RootCAType must be one of %s" % (where, name, ", ".join(ROOT_CA_TYPES)))
            server.root_store[authority.issued.thumbprint] = (authority.issued, root_ca_type)
        server.aia_pool = [a.issued for a in authorities.values() if a.aia and not a.is_root]

    def receive_connectors(self, server, entry, authorities, where):
        connectors = _receive_connector_defaults(server.name, server.fqdn, server.is_edge)
        hybrid = server.org.hybrid
        if hybrid is not None and server.name in hybrid.receiving_servers + hybrid.edge_servers:
            # What the Hybrid Configuration Wizard sets on the connector that receives from Exchange Online.
            front = connectors[0] if server.is_edge else connectors[2]
            front.tls_certificate_name = hybrid.tls_certificate_name
            front.tls_domain_capabilities = [CLOUD_CAPABILITY]
        overrides = entry.get("receive_connectors") or {}
        for name, settings in overrides.items():
            match = [c for c in connectors if c.name.lower() == name.lower()]
            if not match:
                raise FleetError("%s.receive_connectors: no default connector named %r" % (where, name))
            connector = match[0]
            settings = settings or {}
            if "tls_certificate" in settings:
                connector.tls_certificate_name = self.tls_name(settings["tls_certificate"], authorities,
                                                               "%s.receive_connectors.%s" % (where, name))
            for key in ("fqdn", "require_tls", "enabled", "tls_domain_capabilities"):
                if key in settings:
                    setattr(connector, key, settings[key])
        server.receive_connectors = connectors

    def preload_event(self, server, event, where):
        if not isinstance(event, dict) or "id" not in event:
            raise FleetError("%s: an event needs at least an id" % where)
        now = server.now()
        if "age" in event:
            time = now - (self.when("+" + str(event["age"]).lstrip("+-"), where) - self.anchor)
        elif "time" in event:
            time = self.when(event["time"], where)
        else:
            time = now
        server.add_event(int(event["id"]), event.get("provider", mailflow.TRANSPORT_PROVIDER),
                         event.get("level", "Information"), str(event.get("message", "")), time=time,
                         task=event.get("task", ""), log_name=event.get("log_name", "Application"))


class Fleet:
    """A loaded fleet: one organisation, its servers by name (in file order), the lab trust bundle."""

    def __init__(self, name: str, organization: Organization, builder: "_Builder | None" = None):
        self.name = name
        self.organization = organization
        self.servers: "OrderedDict[str, ExchangeServer]" = OrderedDict(organization.servers)
        self._builder = builder

    @classmethod
    def load(cls, path: str, clock=None) -> "Fleet":
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return cls.from_dict(data, name=os.path.splitext(os.path.basename(path))[0], clock=clock)

    @classmethod
    def from_dict(cls, data: dict, name: str = "fleet", clock=None) -> "Fleet":
        builder = _Builder(data, clock or _default_clock)
        organization = builder.build()
        fleet = cls(name, organization, builder)
        with organization.lock:
            for server in fleet.servers.values():
                mailflow.attempt_delivery(server)  # the state a fleet file describes includes its mail flow
        return fleet

    def trust_bundle_pem(self) -> bytes:
        """PEM of the public root(s), the stand-in for the Microsoft Trusted Root Program, followed by
        the public intermediates (as in Microsoft's published list): a verifier never takes those as
        anchors, but can tell a server that lacks one (incomplete chain) from an unknown root."""
        authorities = self.organization.authorities

        def public(authority) -> bool:
            while authority.parent is not None:
                authority = authorities[authority.parent]
            return authority.trust == "public"

        intermediates = [a for a in authorities.values() if not a.is_root and public(a)]
        return pki.pem_bundle([a.issued for a in self.organization.public_roots()] + [a.issued for a in intermediates])

    def status(self) -> dict:
        return {name: server.status() for name, server in self.servers.items()}

    def issued(self, cert_id: str) -> pki.Issued:
        """The certificate (with its key) that the fleet file defines under certificates.<cert_id>:
        the same thumbprint as the lab serving the same file on the same day."""
        definitions = self._builder.data.get("certificates") or {}
        if cert_id not in definitions:
            raise FleetError("certificates: unknown certificate id %r" % cert_id)
        return self._builder.certificate(cert_id, definitions[cert_id], self.organization.authorities,
                                         "certificates.%s" % cert_id)

    def issuing_chain(self, issued: pki.Issued) -> list:
        """The CA certificates above issued, issuing CA first, root last."""
        chain, authority = [], self._builder.authority_by_subject.get(issued.cert.issuer)
        while authority is not None and not issued.is_self_signed:
            chain.append(authority.issued)
            authority = self.organization.authorities.get(authority.parent) if authority.parent else None
        return chain

    def pfx(self, cert_id: str, password: str | None, *, include_key: bool = True, include_chain: bool = True) -> bytes:
        """A PFX of a fleet certificate as a CA delivers it (leaf, key, intermediates and root), made by
        tests/lab/pki.py; include_key=False / include_chain=False leave those out."""
        issued = self.issued(cert_id)
        return pki.make_pfx(issued, self.issuing_chain(issued) if include_chain else (), password=password,
                            include_key=include_key, friendly_name=(self._builder.data["certificates"][cert_id] or {}).get("friendly_name"))

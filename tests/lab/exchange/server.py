"""One simulated Exchange server: its stores, bindings, connectors, queue, event log and audit trail."""

from __future__ import annotations

import base64
import copy
import datetime
import json
from dataclasses import dataclass

from tests.lab import pki
from tests.lab.exchange import chain as chains
from tests.lab.exchange import errors, mailflow, runner
from tests.lab.exchange import services as svc
from tests.lab.exchange.convert import convert
from tests.lab.exchange.model import EventRecord, Fault, same_tls_name


@dataclass(frozen=True)
class Version:
    admin_display_version: str
    os_version: str
    powershell_version: str
    snapin: str  # the snap-in that 'auto' loads


VERSIONS = {
    "2013": Version("Version 15.0 (Build 1497.2)", "6.3.9600", "5.1.14409.1029",
                    "Microsoft.Exchange.Management.PowerShell.SnapIn"),
    "2016": Version("Version 15.1 (Build 2507.6)", "10.0.14393", "5.1.14393.6343",
                    "Microsoft.Exchange.Management.PowerShell.SnapIn"),
    "2019": Version("Version 15.2 (Build 1544.4)", "10.0.17763", "5.1.17763.5830",
                    "Microsoft.Exchange.Management.PowerShell.SnapIn"),
    "SE": Version("Version 15.2 (Build 2562.17)", "10.0.20348", "5.1.20348.2849",
                  "Microsoft.Exchange.Management.PowerShell.SnapIn"),
}
# What loading the Exchange cmdlets reports as load_ms, per method (nominal: the lab does not wait).
# Loading takes seconds (exchange-facts.md, "Loading the Exchange cmdlets"); remote PowerShell is the slowest.
SESSION_LOAD_MS = {"none": 0, "present": 0, "snapin": 2100, "edge": 2300, "remote_exchange": 6400}
LANGUAGE_MODES = ("FullLanguage", "ConstrainedLanguage", "RestrictedLanguage", "NoLanguage")
# UTC offsets of a server's clock, by locale, for the deserialized dates of remote sessions.
_LOCAL_OFFSETS = {"en": -5, "de": 1, "cs": 1}


def deserialized(value, offset_hours: int):
    """A value as a remote (implicit remoting) session hands it to the runner: CLIXML keeps strings,
    numbers and bools; enums arrive as their names (Exchange's remote shell serializes its enums as
    strings: Services "IMAP, POP, SMTP"); DateTime arrives as a local time with the server's offset;
    byte[] (RawData) is given as base64 text here, the form the runner passes through unchanged; lists
    arrive as lists of such values."""
    if isinstance(value, datetime.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
        return aware.astimezone(datetime.timezone(datetime.timedelta(hours=offset_hours)))
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {key: deserialized(item, offset_hours) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [deserialized(item, offset_hours) for item in value]
    return value


# Reads of what lives in Active Directory: after a change they may be answered by another domain controller,
# which has not replicated it yet. Microsoft's New-ExchangeAuthCertificate.ps1 (CSS-Exchange,
# Admin/MonitorExchangeAuthCertificate/ConfigurationAction) waits 10 s after Enable-ExchangeCertificate before
# it reads the internal transport certificate back from AD (msExchServerInternalTLSCert,
# Shared/ActiveDirectoryFunctions/Get-InternalTransportCertificateFromServer.ps1).
LAGGING_READS = ("Get-ExchangeCertificate", "Get-TransportService", "Get-SendConnector", "Get-ReceiveConnector",
                 "Get-HybridConfiguration")


class ExchangeServer:
    """State of one server plus the entry points the WinRM endpoint and the control API call."""

    def __init__(self, *, org, name: str, fqdn: str, domain: str, role: str, version: str, locale: str,
                 enable_behavior: str, tls, clock, edition: str = "Standard", session: dict | None = None,
                 initial_messages: int = 0, language_mode: str = "FullLanguage", ecc_support: bool = False,
                 credential_delegation: bool = True, replication_reads: int = 0):
        self.org = org
        self.name = name
        self.fqdn = fqdn
        self.domain = domain
        self.role = role  # "Mailbox" or "Edge"
        self.version = version
        self.locale = locale
        self.enable_behavior = enable_behavior
        self.tls = tls
        self.edition = edition
        self._clock = clock
        self.session = dict(session or {})
        self.language_mode = language_mode  # $ExecutionContext.SessionState.LanguageMode of a WinRM session
        # False: the WinRM logon cannot pass its credentials on (NTLM, Kerberos without delegation), so Exchange
        # tasks cannot reach AD and Connect-ExchangeServer cannot authenticate (errors.ad_unavailable). True stands
        # in for Kerberos with delegation or CredSSP, which the lab's listener does not speak. Edge: local accounts
        # and the local AD LDS instance, no second hop.
        self.credential_delegation = credential_delegation
        # Fleet replication_delay {reads: N}: after a change, each LAGGING_READS call (cmdlet + parameters) answers
        # what it answered before the change for its next N calls (0: no delay).
        self.replication_reads = replication_reads
        self.last_reads: dict = {}  # (cmdlet, parameters) -> objects it last answered, as of now
        self.stale_reads: dict = {}  # (cmdlet, parameters) -> [objects before the change, reads left]
        self.initial_messages = initial_messages
        # Exchange's ECC certificate support (Microsoft Learn, "Exchange Server support for ECC certificates"; as
        # CSS-Exchange HealthChecker checks it, Invoke-AnalyzerSecurityOverrides.ps1): the setting override
        # -Component Global -Section ECCCertificateSupport -Parameters Enabled=true applies to the server and the
        # registry value EnableEccCertificateSupport is 1. Off, an ECC certificate cannot be enabled
        # (Enable-ExchangeCertificate: KeyAlgorithmUnsupported). True stands for both.
        self.ecc_support = ecc_support
        self.certificates: dict = {}  # thumbprint -> InstalledCertificate (Cert:\LocalMachine\My)
        self.intermediate_store: dict = {}  # thumbprint -> pki.Issued (Intermediate Certification Authorities)
        self.root_store: dict = {}  # thumbprint -> (pki.Issued, RootCAType)
        self.aia_pool: list = []  # CA certificates Windows could fetch through AIA (Exchange's Status only)
        self.internal_transport_thumbprint: str | None = None
        self.web_thumbprint: str | None = None  # Default Web Site binding
        self.backend_thumbprint: str | None = None  # Exchange Back End binding (the self-signed one)
        self.receive_connectors: list = []
        self.queue = None
        self.queue_number = 7
        self.mail_flow: dict = {}
        self.events: list = []
        self.next_record_id = 1000
        self.mutations: list = []
        self.call_counts: dict = {}
        self.faults: dict = {}

    # ----------------------------------------------------------------------------------- basics

    @property
    def is_edge(self) -> bool:
        return self.role == "Edge"

    @property
    def lock(self):
        return self.org.lock

    def now(self) -> datetime.datetime:
        return self._clock().astimezone(datetime.timezone.utc).replace(microsecond=0)

    @property
    def powershell_version(self) -> str:
        return VERSIONS[self.version].powershell_version

    @property
    def os_version(self) -> str:
        return VERSIONS[self.version].os_version

    def services_of(self, cert) -> int:
        """Services as Exchange reports them: stored flags plus IIS when an IIS site is bound to it."""
        value = cert.services
        if cert.thumbprint in (self.web_thumbprint, self.backend_thumbprint):
            value |= svc.IIS
        return value

    def trusted_roots(self) -> dict:
        return {thumbprint: root_ca_type for thumbprint, (_root, root_ca_type) in self.root_store.items()}

    def local_chain(self, issued: pki.Issued) -> chains.Chain:
        """The chain as Windows builds it here: local stores only (what Schannel can send)."""
        candidates = [cert.issued for cert in self.certificates.values()]
        candidates += list(self.intermediate_store.values())
        candidates += [root for root, _root_ca_type in self.root_store.values()]
        return chains.build_chain(issued, candidates, self.trusted_roots(), self.now())

    def exchange_opinion(self, cert) -> tuple:
        """(Status, RootCAType) of Get-ExchangeCertificate: the chain may use AIA-fetchable CAs."""
        candidates = [c.issued for c in self.certificates.values()] + list(self.intermediate_store.values())
        candidates += [root for root, _root_ca_type in self.root_store.values()] + self.aia_pool
        status, root_ca_type = chains.exchange_opinion(
            chains.build_chain(cert.issued, candidates, self.trusted_roots(), self.now())
        )
        return cert.status_override or status, cert.root_ca_type_override or root_ca_type

    # ------------------------------------------------------------------------------- resolution

    def visible_servers(self) -> list:
        """Servers this one's directory knows: the whole organisation, or only itself on an Edge (ADAM)."""
        if self.is_edge:
            return [self]
        return list(self.org.servers.values())

    def resolve_server(self, identity, cmdlet_name: str, include_edge: bool = False):
        key = str(identity).strip().lower()
        for server in self.visible_servers():
            if key in (server.name.lower(), server.fqdn.lower()):
                if server is self or include_edge or not server.is_edge:
                    return server
        raise errors.object_not_found(cmdlet_name, str(identity), self.org.domain_controller)

    # ---------------------------------------------------------------------------------- objects

    def exchange_server_object(self) -> dict:
        return {
            "Identity": self.name,
            "Name": self.name,
            "Fqdn": self.fqdn,
            "AdminDisplayVersion": VERSIONS[self.version].admin_display_version,
            "ServerRole": self.role,
            "Edition": self.edition,
            "IsEdgeServer": self.is_edge,
            "IsHubTransportServer": not self.is_edge,
            "Site": None if self.is_edge else self.org.site_identity,
            "Domain": self.domain,
        }

    def certificate_object(self, cert) -> dict:
        issued = cert.issued
        status, root_ca_type = self.exchange_opinion(cert)
        public_key = issued.cert.public_key()
        serial = issued.cert.serial_number
        serial_bytes = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # DER INTEGER content
        return {
            "Identity": "%s\\%s" % (self.name, cert.thumbprint),
            "Thumbprint": cert.thumbprint,
            "Subject": issued.subject,
            "Issuer": issued.issuer,
            "FriendlyName": cert.friendly_name,
            "SerialNumber": serial_bytes.hex().upper(),
            "CertificateDomains": cert.domains,
            "Services": svc.format_services(self.services_of(cert)),
            "Status": status,
            "RootCAType": root_ca_type,
            "IsSelfSigned": issued.is_self_signed,
            "HasPrivateKey": cert.has_private_key,
            "PrivateKeyExportable": cert.has_private_key,
            "NotBefore": issued.not_before,
            "NotAfter": issued.not_after,
            "PublicKeySize": public_key.key_size if hasattr(public_key, "key_size") else None,
            "Version": 3,
            "RawData": issued.der,
        }

    def queue_objects(self) -> list:
        objects = [
            {
                "Identity": "%s\\Submission" % self.name,
                "DeliveryType": "Undefined",
                "NextHopDomain": "Submission",
                "NextHopConnector": "00000000-0000-0000-0000-000000000000",
                "NextHopCategory": "Internal",
                "Status": "Ready",
                "MessageCount": 0,
                "LastError": None,
                "LastRetryTime": None,
                "NextRetryTime": None,
            }
        ]
        queue = self.queue
        if queue is not None:
            objects.append(
                {
                    "Identity": queue.identity,
                    "DeliveryType": "DnsConnectorDelivery" if queue.connector.dns_routing_enabled
                    else "SmartHostConnectorDelivery",
                    "NextHopDomain": self.org.next_hop_domain,
                    "NextHopConnector": queue.connector.guid,
                    "NextHopCategory": "External",
                    "Status": queue.status,
                    "MessageCount": queue.message_count,
                    "LastError": queue.last_error,
                    "LastRetryTime": queue.last_retry_time,
                    "NextRetryTime": queue.next_retry_time,
                }
            )
        return objects

    # ------------------------------------------------------------------------------ event log

    def add_event(self, event_id: int, provider: str, level: str, message: str, *, time=None, task: str = "",
                  log_name: str = "Application") -> EventRecord:
        record = EventRecord(self.next_record_id, event_id, provider, level, time or self.now(), message,
                             log_name, task)
        self.next_record_id += 1
        self.events.append(record)
        mailflow.trim_events(self.events)
        return record

    # --------------------------------------------------------------------------- request entry

    def load_session(self, method: str) -> str:
        """The Exchange session for a request: the method used, or RequestProblem(SessionLoadFailed)."""
        failure = self.session.get("load_error")
        if method == "none":
            return "none"
        if method == "auto":
            # Exchange 2013+ and Edge: the snap-in (exShell.psc1 names the same one); a fleet may say that
            # only remote PowerShell works here (session.auto: remote_exchange).
            method = self.session.get("auto", "snapin")
        if method == "remote_exchange" and not self.is_edge and not self.credential_delegation:
            failure = failure or errors.second_hop_session_message(self.fqdn)
        if method == "remote_exchange" and (self.is_edge or not self.session.get("remote_exchange", True)):
            failure = failure or (
                "Connecting to remote server %s failed with the following error message : Access is denied."
                % self.fqdn
                if not self.is_edge
                else "The term 'Connect-ExchangeServer' is not recognized as the name of a cmdlet, function, "
                "script file, or operable program."
            )
        if failure and method == "remote_exchange" and not self.is_edge and not self.session.get("load_error"):
            # Connect-ExchangeServer -Auto, when no server of the site accepts the session, asks for one with
            # Read-Host; under -NonInteractive that prompt's error is what the runner catches, and it adds the
            # errors $Error recorded before it, oldest first (runner.ps1 [H16]).
            raise runner.RequestProblem("SessionLoadFailed", "cannot load the Exchange cmdlets (remote_exchange: %s (after: %s))"
                                        % (errors.NONINTERACTIVE_MESSAGE, failure))
        if failure:
            raise runner.RequestProblem("SessionLoadFailed", failure)
        return method

    def replicated_read(self, cmdlet: str, arguments: dict, read):
        """read() (the handler), unless replication_delay makes this call answer the state before the last change."""
        if cmdlet not in LAGGING_READS or not self.replication_reads:
            return read()
        key = (cmdlet, json.dumps(runner.parameters_for_log(arguments), sort_keys=True))
        stale = self.stale_reads.get(key)
        if stale:
            stale[1] -= 1
            if stale[1] <= 0:
                del self.stale_reads[key]
            return copy.deepcopy(stale[0])
        objects = read()
        self.last_reads[key] = copy.deepcopy(objects)
        return objects

    def reads_lag(self) -> None:
        """A change was made: the reads answered before it keep answering that (replication_delay)."""
        if self.replication_reads:
            for key, objects in self.last_reads.items():
                self.stale_reads.setdefault(key, [objects, self.replication_reads])
            self.last_reads = {}

    def directory_reachable(self, load: str) -> bool:
        """Whether an Exchange task of a session loaded this way can bind to AD: a remote_exchange session runs
        it inside IIS on the server (its own logon); a local (snap-in) one as the WinRM logon (errors.ad_unavailable)."""
        return self.is_edge or self.credential_delegation or load == "remote_exchange"

    def session_load_ms(self, method: str) -> int:
        return int(self.session.get("load_ms", SESSION_LOAD_MS.get(method, 0)) if method != "none" else 0)

    def session_shape(self, method: str, objects: list) -> list:
        """The objects of an Exchange cmdlet as the runner sees them: local (snap-in) objects as they
        are, deserialized ones through a remote_exchange session (wire contract, "Value conversion")."""
        if method != "remote_exchange":
            return objects
        return [deserialized(obj, _LOCAL_OFFSETS.get(self.locale, 0)) for obj in objects]

    def account_name(self, user: str | None) -> str | None:
        """The WinRM account as WindowsIdentity.GetCurrent().Name gives it: DOMAIN\\user, with the NetBIOS
        domain of the AD domain, or the computer name for a local account on a workgroup (Edge) server."""
        if not user or "\\" in user:
            return user
        user = user.split("@", 1)[0]
        return "%s\\%s" % (self.name if self.is_edge else self.domain.split(".")[0].upper(), user)

    def handle_request(self, request: dict, user: str | None = None) -> dict:
        """Emulate runner.ps1 for one decoded request (thread-safe); user is the connection's account."""
        with self.lock:
            return runner.execute(self, request, user=user)

    def count_call(self, cmdlet: str) -> None:
        self.call_counts[cmdlet] = self.call_counts.get(cmdlet, 0) + 1

    def fault_fires(self, cmdlet: str) -> bool:
        fault = self.faults.get(cmdlet.lower())
        return bool(fault and fault.should_fire())

    def record_mutation(self, cmdlet: str, arguments: dict, *, error=None, changes=(), what_if=False) -> None:
        if error is not None:
            result = "error"
        elif what_if:
            result = "whatif"
        else:
            result = "ok"
        self.mutations.append(
            {
                "time": convert(self.now()),
                "cmdlet": cmdlet,
                "parameters": runner.parameters_for_log(arguments),
                "result": result,
                "error": error.to_json() if error is not None else None,
                "changes": list(changes),
            }
        )

    def after_mutations(self, changed_servers: set, organization_changed: bool) -> None:
        """Transport notices the change: a delivery attempt where it may matter."""
        if organization_changed:
            targets = list(self.org.servers.values())
        else:
            targets = [server for server in self.org.servers.values() if server in changed_servers]
        for server in targets:
            mailflow.attempt_delivery(server)

    # --------------------------------------------------------------------------- faults, status

    def inject_cmdlet_fault(self, cmdlet: str, message: str | None = None, after: int = 0, times: int = 1) -> None:
        """The named cmdlet fails after `after` calls of it, `times` times (0: until cleared)."""
        with self.lock:
            self.faults[cmdlet.lower()] = Fault(cmdlet, message, int(after), int(times))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def receive_tls(self) -> list:
        """Receive connectors that name a certificate, and whether this server still holds one.

        Exchange does not stop a Remove-ExchangeCertificate for a receive connector's name (only for
        send connectors), so this is where a broken inbound TLS configuration shows up.
        """
        result = []
        for connector in self.receive_connectors:
            if not connector.tls_certificate_name:
                continue
            matches = [c for c in self.certificates.values() if same_tls_name(connector.tls_certificate_name, c)]
            chosen = max(matches, key=lambda c: (c.issued.not_after, c.thumbprint)) if matches else None
            result.append({"connector": connector.identity, "tls_certificate_name": connector.tls_certificate_name,
                           "certificate": chosen.thumbprint if chosen else None})
        return result

    def starttls(self) -> list:
        """The certificate each enabled receive connector offers for STARTTLS, as outbound selection picks it
        (mailflow.select_certificate: TlsCertificateName, else the SMTP certificates matching its Fqdn).
        Inbound selection follows the same two rules (Microsoft Learn, "TLS functionality and related
        terminology in Exchange Server": a receive connector's certificate is chosen by its FQDN unless
        TlsCertificateName names one); a failure means the connector has no certificate to offer."""
        now = self.now()
        return [dict(mailflow.select_certificate(self, connector, now).to_json(), connector=connector.identity)
                for connector in self.receive_connectors if connector.enabled]

    def status(self) -> dict:
        with self.lock:
            mail_flow = mailflow.attempt_delivery(self)
            certificates = []
            for cert in self.certificates.values():
                status, root_ca_type = self.exchange_opinion(cert)
                certificates.append(
                    {
                        "thumbprint": cert.thumbprint,
                        "source": cert.source,
                        "subject": cert.issued.subject,
                        "issuer": cert.issued.issuer,
                        "friendly_name": cert.friendly_name,
                        "domains": cert.domains,
                        "services": svc.format_services(self.services_of(cert)),
                        "not_before": convert(cert.issued.not_before),
                        "not_after": convert(cert.issued.not_after),
                        "status": status,
                        "root_ca_type": root_ca_type,
                        "has_private_key": cert.has_private_key,
                        "is_self_signed": cert.issued.is_self_signed,
                        "chain_status": self.local_chain(cert.issued).status,
                    }
                )
            queue = self.queue
            return convert(
                {
                    "name": self.name,
                    "fqdn": self.fqdn,
                    "role": self.role,
                    "version": self.version,
                    "locale": self.locale,
                    "enable_behavior": self.enable_behavior,
                    "language_mode": self.language_mode,
                    "credential_delegation": self.credential_delegation,
                    "replication_delay": {"reads": self.replication_reads,
                                          "stale": sorted({cmdlet for cmdlet, _parameters in self.stale_reads})},
                    "session": dict(self.session),
                    "certificates": certificates,
                    "internal_transport_certificate": self.internal_transport_thumbprint,
                    "internal_mail_flow": mailflow.internal_mail_flow(self),
                    "web_certificate": self.web_thumbprint,
                    "backend_certificate": self.backend_thumbprint,
                    "send_connectors": [c.to_object() for c in self.org.send_connectors],
                    "receive_connectors": [c.to_object() for c in self.receive_connectors],
                    "receive_tls": self.receive_tls(),
                    "starttls": self.starttls(),
                    "hybrid_configuration": self.org.hybrid.to_object() if self.org.hybrid else None,
                    "tls": {"tls12_client": self.tls.tls12_client, "tls12_server": self.tls.tls12_server,
                            "strong_crypto_net4": self.tls.strong_crypto_net4},
                    "mail_flow": dict(
                        mail_flow,
                        queue=None
                        if queue is None
                        else {
                            "identity": queue.identity,
                            "next_hop_domain": self.org.next_hop_domain,
                            "status": queue.status,
                            "message_count": queue.message_count,
                            "last_error": queue.last_error,
                        },
                    ),
                    "events": [
                        {"record_id": e.record_id, "id": e.event_id, "provider": e.provider, "level": e.level,
                         "time": e.time, "message": e.message}
                        for e in self.events
                    ],
                    "mutations": list(self.mutations),
                    "cmdlet_calls": dict(self.call_counts),
                    "faults": [fault.to_json() for fault in self.faults.values()],
                }
            )

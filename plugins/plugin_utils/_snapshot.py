# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What one audit round trip tells about one Exchange server.

audit_request() names every read the collection needs; ServerSnapshot.from_response() turns the
runner's answer into model records; `exposure` (_exposure) says what faces Exchange Online. Pure
Python, no Ansible imports.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Mapping

from . import _exposure, _model, _runner

COMPUTERNAME = {"__hybridmail": "computername"}

CERTIFICATE_PROPERTIES = (
    "Thumbprint", "Subject", "Issuer", "FriendlyName", "SerialNumber", "CertificateDomains", "Services",
    "Status", "RootCAType", "IsSelfSigned", "HasPrivateKey", "NotBefore", "NotAfter", "PublicKeySize", "RawData",
)
# The state a remediation plan depends on: a mutating round trip re-reads these first and aborts
# when they differ from what the plan was computed from (wire contract: guards).
CERTIFICATE_GUARD_PROPERTIES = ("Thumbprint", "Services")
TRANSPORT_GUARD_PROPERTIES = ("InternalTransportCertificateThumbprint",)
CONNECTOR_GUARD_PROPERTIES = ("Identity", "TlsCertificateName")

SEND_CONNECTOR_PROPERTIES = (
    "Identity", "Name", "Enabled", "Fqdn", "AddressSpaces", "SourceTransportServers", "SmartHosts",
    "DNSRoutingEnabled", "CloudServicesMailEnabled", "RequireTLS", "TlsAuthLevel", "TlsDomain", "TlsCertificateName",
)
RECEIVE_CONNECTOR_PROPERTIES = (
    "Identity", "Name", "Server", "Enabled", "Fqdn", "Bindings", "TransportRole", "RequireTLS", "AuthMechanism",
    "TlsCertificateName", "TlsDomainCapabilities",
)

# Error identifiers that mean "nothing there" rather than "something failed".
NO_EVENTS_FQID = "NoMatchingEventsFound,Microsoft.PowerShell.Commands.GetWinEventCommand"
COMMAND_NOT_FOUND = "CommandNotFoundException"
# An Exchange cmdlet that is no command on a Mailbox server: a remote session imports only the cmdlets of the
# user's RBAC roles (tests/lab/exchange/rbac.py), so it is a missing permission, never "nothing there".
MISSING_PERMISSION = ("Missing permission: a remote Exchange session holds only the cmdlets of the user's RBAC roles; "
                      "assign a role that includes it (server_preflight's rbac_audit line names them)")


class SnapshotError(Exception):
    """A read the audit cannot do without failed on the server."""


def call(call_id: str, cmdlet: str, properties=(), expect=None, **parameters) -> dict:
    request_call = {"id": call_id, "cmdlet": cmdlet, "parameters": parameters, "properties": list(properties)}
    if expect is not None:
        request_call["expect"] = expect
    return request_call


# Exchange's ECC support (_model.ecc_support): the setting overrides, and a registry value Get-HybridmailTlsState reads.
SETTING_OVERRIDES_CMDLET = "Get-SettingOverride"
TLS_PROPERTIES = ("Tls12ClientEnabled", "Tls12ServerEnabled", "StrongCryptoNet4", "EccCertificateSupport")
SETTING_OVERRIDE_PROPERTIES = ("Name", "ComponentName", "SectionName", "Parameters", "Server", "Status")


def audit_calls(event_lookback_days: int = 7, max_events: int = 50) -> list:
    """Every read of an audit, in the order the runner executes them."""
    calls = [
        call("host", "Get-HybridmailHost", ("ComputerName", "Fqdn", "Domain", "PowerShellVersion", "OSVersion", "Culture")),
        call("server", "Get-ExchangeServer", ("Name", "Fqdn", "AdminDisplayVersion", "ServerRole", "Edition", "IsEdgeServer", "Site"),
             Identity=COMPUTERNAME),
        call("transport", "Get-TransportService", ("Name", "InternalTransportCertificateThumbprint"), Identity=COMPUTERNAME),
        call("certificates", "Get-ExchangeCertificate", CERTIFICATE_PROPERTIES, Server=COMPUTERNAME),
        call("chains", "Get-HybridmailCertificateChain", ("Thumbprint", "ChainThumbprints", "ChainRawData", "ChainStatus")),
        call("send_connectors", "Get-SendConnector", SEND_CONNECTOR_PROPERTIES),
        call("receive_connectors", "Get-ReceiveConnector", RECEIVE_CONNECTOR_PROPERTIES, Server=COMPUTERNAME),
        call("hybrid", "Get-HybridConfiguration", ("TlsCertificateName", "SendingTransportServers", "ReceivingTransportServers",
                                                   "EdgeTransportServers", "Domains", "OnPremisesSmartHost", "Features")),
        call("queues", "Get-Queue", ("Identity", "DeliveryType", "NextHopDomain", "NextHopConnector", "Status", "MessageCount",
                                     "LastError", "LastRetryTime", "NextRetryTime"), Server=COMPUTERNAME),
        call("tls", "Get-HybridmailTlsState", TLS_PROPERTIES),
        call("setting_overrides", SETTING_OVERRIDES_CMDLET, SETTING_OVERRIDE_PROPERTIES),
    ]
    if event_lookback_days > 0:
        calls.append(call(
            "events", "Get-WinEvent", ("Id", "ProviderName", "TimeCreated", "LevelDisplayName", "MachineName", "Message"),
            FilterHashtable={"LogName": "Application", "ProviderName": "MSExchangeTransport", "Id": 2004,
                             "StartTime": {"__hybridmail": "days_ago", "value": event_lookback_days}},
            MaxEvents=max_events,
        ))
    return calls


def request(calls, read_only: bool, session_load: str = "auto") -> dict:
    return {"version": _runner.WIRE_VERSION, "read_only": read_only, "session": {"load": session_load}, "calls": list(calls)}


@dataclass(frozen=True)
class CallFailure:
    """A failed call the audit can live without, kept as evidence for reports."""

    call_id: str
    cmdlet: str
    message: str


@dataclass(frozen=True)
class ServerSnapshot:
    host: str  # the inventory name, for messages
    computer_name: str | None
    powershell: str | None
    server: _model.ExchangeServer
    transport: _model.TransportService | None
    certificates: tuple[_model.Certificate, ...]
    chains: tuple[_model.CertificateChain, ...]
    send_connectors: tuple[_model.SendConnector, ...]  # those this server is a source of
    receive_connectors: tuple[_model.ReceiveConnector, ...]
    hybrid: _model.HybridConfiguration | None
    events: tuple[_model.TransportEvent, ...] | None  # None: not looked up
    queues: tuple[_model.QueueInfo, ...]
    tls: Mapping | None
    failures: tuple[CallFailure, ...]
    # Exchange's ECC certificate support on this server (_model.ecc_support): True/False, None when unknown; and why.
    ecc_support: bool | None = None
    ecc_support_reason: str = ""

    @classmethod
    def from_response(cls, response: Mapping, host: str, calls) -> ServerSnapshot:
        """Build a snapshot; raises SnapshotError when a read it cannot do without failed."""
        results = {result.get("id"): result for result in response.get("calls") or ()}
        cmdlets = {request_call["id"]: request_call["cmdlet"] for request_call in calls}
        failures = []

        def objects(call_id, required=True, absent_fqids=()):
            result = results.get(call_id)
            if result is None:
                if call_id not in cmdlets:
                    return None
                raise SnapshotError("%s: the runner returned no result for %s (%s)" % (host, cmdlets[call_id], call_id))
            if result.get("ok"):
                return result.get("objects") or []
            error = result.get("error") or {}
            if error.get("fqid") in absent_fqids or (error.get("fqid") or "").split(",")[0] in absent_fqids:
                return []
            message = "%s: %s: %s [%s]" % (error.get("type"), error.get("category"), error.get("message"), error.get("fqid"))
            if (error.get("fqid") or "").split(",")[0] == COMMAND_NOT_FOUND and cmdlets[call_id] in _runner.EXCHANGE_CMDLETS:
                message += ". " + MISSING_PERMISSION
            if required:
                advice = _runner.second_hop_advice(message)
                raise SnapshotError("%s: %s (%s) failed: %s%s" % (
                    host, cmdlets[call_id], call_id, message, ". Probably " + advice if advice else ""))
            failures.append(CallFailure(call_id, cmdlets[call_id], message))
            return []

        host_objects = objects("host", required=False)
        server_objects = objects("server")
        if not server_objects:
            raise SnapshotError("%s: Get-ExchangeServer returned no server for this computer" % host)
        server = _model.ExchangeServer.from_object(server_objects[0])
        transport_objects = objects("transport", required=False)
        send_connectors = tuple(_model.SendConnector.from_object(obj) for obj in objects("send_connectors"))
        # Get-SendConnector lists the organisation's connectors (on Edge, those EdgeSync copied); only
        # those this server is a source of carry its mail. A connector listing no source is kept.
        own = _model.server_name_key(server.name)
        send_connectors = tuple(c for c in send_connectors if not c.source_transport_servers
                                or own in {_model.server_name_key(s) for s in c.source_transport_servers})
        # Not a command: on Edge Transport that means no hybrid configuration [H8]; anywhere else the session lacks it.
        hybrid_objects = objects("hybrid", required=not server.is_edge, absent_fqids=(COMMAND_NOT_FOUND,) if server.is_edge else ())
        events = objects("events", required=False, absent_fqids=(NO_EVENTS_FQID,))
        tls_objects = objects("tls", required=False)
        overrides = objects("setting_overrides", required=False, absent_fqids=(COMMAND_NOT_FOUND,) if server.is_edge else ())
        ecc_support, ecc_support_reason = _model.ecc_support(
            None if any(f.call_id == "setting_overrides" for f in failures) else overrides,
            tls_objects[0] if tls_objects else None, server.name, server.is_edge)
        first_host = host_objects[0] if host_objects else {}
        return cls(
            host=host,
            computer_name=first_host.get("ComputerName") or response.get("host"),
            powershell=first_host.get("PowerShellVersion") or (response.get("runner") or {}).get("powershell"),
            server=server,
            transport=_model.TransportService.from_object(transport_objects[0]) if transport_objects else None,
            certificates=tuple(_model.Certificate.from_object(obj) for obj in objects("certificates")),
            chains=tuple(_model.CertificateChain.from_object(obj) for obj in objects("chains", required=False)),
            send_connectors=send_connectors,
            receive_connectors=tuple(_model.ReceiveConnector.from_object(obj) for obj in objects("receive_connectors")),
            hybrid=_model.HybridConfiguration.from_object(hybrid_objects[0]) if hybrid_objects else None,
            events=None if events is None else tuple(_model.TransportEvent.from_object(obj) for obj in events),
            queues=tuple(_model.QueueInfo.from_object(obj) for obj in objects("queues", required=False)),
            tls=tls_objects[0] if tls_objects else None,
            failures=tuple(failures),
            ecc_support=ecc_support,
            ecc_support_reason=ecc_support_reason,
        )

    # -- derived facts --------------------------------------------------------------------------

    @property
    def fqdn(self) -> str:
        return (self.server.fqdn or self.computer_name or self.host).lower()

    @property
    def internal_transport_thumbprint(self) -> str | None:
        return self.transport.internal_transport_certificate_thumbprint if self.transport else None

    @functools.cached_property
    def exposure(self) -> _exposure.Exposure:
        """Which certificate each cloud connector presents to Exchange Online (_exposure)."""
        return _exposure.of(self.fqdn, self.server.name, self.certificates, self.send_connectors, self.receive_connectors, self.hybrid)

    @property
    def is_hybrid_transport_server(self) -> bool:
        if self.hybrid is None:
            return False
        own = _model.server_name_key(self.server.name)
        servers = self.hybrid.sending_transport_servers + self.hybrid.receiving_transport_servers + self.hybrid.edge_transport_servers
        return own in {_model.server_name_key(s) for s in servers}

    @functools.cached_property
    def _named_by(self) -> dict:
        return {}

    def certificates_named_by(self, tls_certificate_name: str | None) -> tuple[_model.Certificate, ...]:
        # Memoized per name: callers ask for each certificate, which would scan all of them every time.
        if tls_certificate_name not in self._named_by:
            parsed = _model.parse_tls_certificate_name(tls_certificate_name)
            self._named_by[tls_certificate_name] = (
                () if parsed is None else _model.certificates_matching_tls_name(parsed, self.certificates))
        return self._named_by[tls_certificate_name]

    def exchange_online_queues(self) -> tuple[_model.QueueInfo, ...]:
        return tuple(q for q in self.queues if q.is_to_exchange_online(self.send_connectors))

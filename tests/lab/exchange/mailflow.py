"""Mail flow toward Exchange Online: outbound certificate selection, the cloud gateway, the queue.

Selection follows exchange-facts.md ("Which certificate transport uses toward Exchange Online"):
1. The cloud send connector's TlsCertificateName, when set: the matching certificates (issuer and
   subject); several -> the latest NotAfter wins. A match not enabled for SMTP (or without private
   key) fails with UnknownCredentials; no match fails with 454 4.7.5.
2. Otherwise the SMTP-enabled certificates with a private key whose names cover the connector's
   Fqdn (or the server FQDN). Microsoft does not document the tie-break - that gap is KB 2888788.
   The lab prefers time-valid, then CA-issued over self-signed, then the most recent NotBefore (the
   newest certificate), then the thumbprint. So a newly added internal-CA certificate beats the
   older public one, which is exactly the incident.
A delivery attempt happens when the fleet loads, after a request that changed something and when
status() is read. Each attempt adds one message (mail keeps arriving); success empties the queue.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

from tests.lab.exchange import chain as chains
from tests.lab.exchange import services as svc
from tests.lab.exchange import texts
from tests.lab.exchange.model import QueueState, same_tls_name

# TEST-NET-2 address standing in for <tenant>.mail.protection.outlook.com.
GATEWAY_ENDPOINT = "198.51.100.25:25"
RETRY_INTERVAL = datetime.timedelta(minutes=5)
TRANSPORT_PROVIDER = "MSExchangeTransport"
MAX_EVENTS = 1000


@dataclass
class Selection:
    rule: str  # "TlsCertificateName" or "Fqdn"
    looked_for: str  # the TlsCertificateName, or the FQDN
    certificate: object | None  # InstalledCertificate
    failure: str | None  # CertificateNotFound / UnknownCredentials / NoCertificate
    candidates: list  # thumbprints considered

    def to_json(self) -> dict:
        return {
            "rule": self.rule,
            "looked_for": self.looked_for,
            "certificate": self.certificate.thumbprint if self.certificate else None,
            "failure": self.failure,
            "candidates": list(self.candidates),
        }


def cloud_connector(server):
    """The enabled send connector toward Exchange Online whose source servers include this server."""
    for connector in server.org.send_connectors:
        if connector.enabled and connector.is_cloud and server.name.lower() in (
            name.lower() for name in connector.source_servers
        ):
            return connector
    return None


def select_certificate(server, connector, now: datetime.datetime) -> Selection:
    certificates = list(server.certificates.values())
    if connector.tls_certificate_name:
        matches = [cert for cert in certificates if same_tls_name(connector.tls_certificate_name, cert)]
        candidates = [cert.thumbprint for cert in matches]
        if not matches:
            return Selection("TlsCertificateName", connector.tls_certificate_name, None, "CertificateNotFound", [])
        chosen = max(matches, key=lambda cert: (cert.issued.not_after, cert.thumbprint))
        usable = server.services_of(chosen) & svc.SMTP and chosen.has_private_key
        return Selection("TlsCertificateName", connector.tls_certificate_name, chosen,
                         None if usable else "UnknownCredentials", candidates)
    name = connector.fqdn or server.fqdn
    eligible = [
        cert
        for cert in certificates
        if server.services_of(cert) & svc.SMTP and cert.has_private_key and cert.matches_name(name)
    ]
    candidates = [cert.thumbprint for cert in eligible]
    if not eligible:
        return Selection("Fqdn", name, None, "NoCertificate", candidates)
    chosen = max(
        eligible,
        key=lambda cert: (
            chains.time_valid(cert.issued, now),
            not cert.issued.is_self_signed,
            cert.issued.not_before,
            cert.thumbprint,
        ),
    )
    return Selection("Fqdn", name, chosen, None, candidates)


def _failover_error(response: str) -> str:
    return (
        '451 4.4.0 Primary target IP address responded with: "%s." Attempted failover to alternate host, '
        "but that did not succeed. Either there are no alternate hosts, or delivery failed to all alternate "
        "hosts. The last endpoint attempted was %s" % (response, GATEWAY_ENDPOINT)
    )


def attempt_delivery(server) -> dict:
    """One delivery attempt of the server's queue toward Exchange Online; returns the mail_flow status."""
    now = server.now()
    connector = cloud_connector(server)
    if connector is None:
        server.queue = None
        server.mail_flow = {"routes_to_exchange_online": False, "connector": None, "delivered": None}
        return server.mail_flow
    queue = server.queue
    if queue is None or queue.connector is not connector:
        queue = QueueState(identity="%s\\%d" % (server.name, server.queue_number), connector=connector,
                           message_count=queue.message_count if queue else server.initial_messages)
        server.queue = queue
    queue.message_count += 1
    selection = select_certificate(server, connector, now)
    verdict = None
    event = None
    if selection.failure == "CertificateNotFound":
        error = "454 4.7.5 The certificate specified in TlsCertificateName of the SendConnector could not be found."
        event = (12014, "Error", texts.event_12014(server.locale, connector.name, connector.tls_certificate_name))
    elif selection.failure == "NoCertificate":
        error = "454 4.7.5 No certificate enabled for SMTP matches %s." % selection.looked_for
        event = (12014, "Error", texts.event_12014(server.locale, connector.name, selection.looked_for))
    elif selection.failure == "UnknownCredentials":
        error = "451 4.4.0 TLS negotiation failed with error UnknownCredentials"
    elif not server.tls.client_enabled:
        # Without TLS 1.2 the handshake never reaches certificate checks: Exchange Online drops it.
        error = _failover_error("421 4.4.2 Connection dropped due to ConnectionReset")
    else:
        sent = server.local_chain(selection.certificate.issued).elements
        verdict = chains.gateway_verdict(sent, [a.issued for a in server.org.public_roots()], now)
        if verdict.accepted:
            error = None
        else:
            response = "454 4.7.0 Unable to establish an appropriate TLS channel: %s: Access Denied" % verdict.reason
            error = _failover_error(response)
            message_id = "<%s@%s>" % (uuid.uuid5(uuid.NAMESPACE_DNS, "%s/%d" % (server.fqdn, server.next_record_id)),
                                      server.fqdn)
            event = (2004, "Information", texts.event_2004(server.locale, connector.name, message_id, response))
    if error is None:
        queue.message_count = 0
        queue.status = "Ready"
        queue.last_error = None
        queue.next_retry_time = None
    else:
        queue.status = "Retry"
        queue.last_error = error
        queue.last_retry_time = now
        queue.next_retry_time = now + RETRY_INTERVAL
    if event is not None:
        event_id, level, message = event
        server.add_event(event_id, TRANSPORT_PROVIDER, level, message,
                         task="SmtpSend" if event_id == 2004 else "TransportService")
    server.mail_flow = {
        "routes_to_exchange_online": True,
        "connector": connector.name,
        "next_hop_domain": server.org.next_hop_domain,
        "selection": selection.to_json(),
        "outbound_certificate": selection.certificate.thumbprint if selection.certificate else None,
        "tls12_client_enabled": server.tls.client_enabled,
        "gateway": verdict.to_json() if verdict else None,
        "delivered": error is None,
        "last_error": error,
        "attempted_at": now,
    }
    return server.mail_flow


def internal_mail_flow(server) -> dict:
    """Whether the internal transport certificate can still carry mail between Exchange servers."""
    thumbprint = server.internal_transport_thumbprint
    cert = server.certificates.get(thumbprint) if thumbprint else None
    if cert is None:
        return {"ok": False, "reason": "internal transport certificate %s is not installed" % thumbprint}
    if not server.services_of(cert) & svc.SMTP:
        return {"ok": False, "reason": "internal transport certificate is no longer enabled for SMTP"}
    if not cert.has_private_key:
        return {"ok": False, "reason": "internal transport certificate has no private key"}
    if not chains.time_valid(cert.issued, server.now()):
        return {"ok": False, "reason": "internal transport certificate is expired"}
    return {"ok": True, "reason": None}


def trim_events(events: list) -> None:
    if len(events) > MAX_EVENTS:
        del events[: len(events) - MAX_EVENTS]

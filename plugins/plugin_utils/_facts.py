# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Trust verdicts for a server snapshot and the JSON-able facts certificate_info returns.

Pure Python, no Ansible imports: the role's reports and the enforcement modules read the same facts.
"""

from __future__ import annotations

import datetime
from typing import Iterable, Mapping

from . import _model, _snapshot, _trust


def judged_names(snapshot: _snapshot.ServerSnapshot, certificate: _model.Certificate) -> tuple[str, ...]:
    """The names a certificate is judged for: those Exchange Online checks on this server (_exposure),
    whether or not a connector is pinned yet. On a server that does not face Exchange Online, the
    certificate's own names, so that its verdict is about its chain and properties rather than a name
    it was never meant to carry."""
    names = snapshot.exposure.exchange_online_names
    if names:
        return names
    own = ()
    if certificate.x509 is not None:
        own = certificate.x509.dns_names or (certificate.x509.subject_cn,)
    return tuple(name for name in own if name) or (snapshot.fqdn,)


def evaluate(snapshot: _snapshot.ServerSnapshot, store: _trust.TrustStore, now: datetime.datetime,
             min_key_bits: int = 2048) -> dict:
    """A verdict per certificate thumbprint, with the intermediates this server holds: the one trust
    evaluation of a snapshot, which the facts, the plan and the findings all read."""
    held = _trust.server_pool(snapshot.certificates, snapshot.chains)
    return {
        certificate.thumbprint: _trust.evaluate(certificate, intermediates=held, store=store, names=judged_names(snapshot, certificate),
                                                now=now, min_key_bits=min_key_bits, known_intermediates=store.intermediates)
        for certificate in snapshot.certificates
    }


def _verdict_facts(verdict: _trust.Verdict) -> dict:
    return {
        "trusted": verdict.trusted,
        "reasons": [{"code": reason.code, "message": reason.text} for reason in verdict.reasons],
        "names": list(verdict.names),
        "missing_intermediates": [{"thumbprint": link.thumbprint, "subject": link.subject} for link in verdict.missing_intermediates],
        "missing_issuer": verdict.missing_issuer,
    }


def certificate_facts(snapshot: _snapshot.ServerSnapshot, certificate: _model.Certificate, verdict: _trust.Verdict,
                      now: datetime.datetime) -> dict:
    facts = certificate.x509
    return {
        "thumbprint": certificate.thumbprint,
        "friendly_name": certificate.friendly_name,
        "subject": certificate.reported_subject or (facts.subject_windows if facts else None),
        "issuer": certificate.reported_issuer or (facts.issuer_windows if facts else None),
        "serial_number": facts.serial if facts else None,
        "domains": list(facts.dns_names or ((facts.subject_cn,) if facts.subject_cn else ())) if facts else list(certificate.certificate_domains),
        "services": sorted(certificate.services),
        "status": certificate.status,
        "root_ca_type": certificate.root_ca_type,
        "is_self_signed": facts.self_signed if facts else certificate.is_self_signed,
        "has_private_key": certificate.has_private_key,
        "not_before": _model.iso_utc(facts.not_before) if facts else None,
        "not_after": _model.iso_utc(facts.not_after) if facts else None,
        "days_remaining": (facts.not_after - now).days if facts else None,
        "key_type": facts.key_type if facts else None,
        "key_size": facts.key_bits if facts else None,
        "signature_hash": facts.signature_hash if facts else None,
        "parse_error": certificate.parse_error,
        "is_internal_transport": certificate.thumbprint == snapshot.internal_transport_thumbprint,
        "is_auth_certificate": certificate.is_auth_certificate,
        "faces_exchange_online": snapshot.exposure.faces_exchange_online(certificate.thumbprint),
        "hybrid_names": [name for name in snapshot.exposure.hybrid_fqdns if _model.exchange_domain_matches(name, certificate)],
        "chain": [{"thumbprint": link.thumbprint, "subject": link.subject} for link in verdict.chain],
        "verdict": _verdict_facts(verdict),
    }


def _connector_facts(snapshot: _snapshot.ServerSnapshot, connector, is_cloud: bool) -> dict:
    named = snapshot.certificates_named_by(connector.tls_certificate_name)
    return {
        "identity": connector.identity,
        "name": connector.name,
        "enabled": connector.enabled,
        "fqdn": connector.fqdn,
        "is_cloud": is_cloud,
        "require_tls": connector.require_tls,
        "tls_certificate_name": connector.tls_certificate_name,
        "tls_certificate_name_problem": _model.tls_certificate_name_problem(connector.tls_certificate_name)
        if connector.tls_certificate_name else None,
        "tls_certificate_thumbprints": [certificate.thumbprint for certificate in named],
    }


def send_connector_facts(snapshot: _snapshot.ServerSnapshot, connector: _model.SendConnector) -> dict:
    facts = _connector_facts(snapshot, connector, connector.is_cloud)
    facts.update({
        "address_spaces": [str(space.domain) for space in connector.address_spaces],
        "source_transport_servers": list(connector.source_transport_servers),
        "smart_hosts": list(connector.smart_hosts),
        "dns_routing_enabled": connector.dns_routing_enabled,
        "cloud_services_mail_enabled": connector.cloud_services_mail_enabled,
        "tls_auth_level": connector.tls_auth_level,
        "tls_domain": connector.tls_domain,
    })
    return facts


def receive_connector_facts(snapshot: _snapshot.ServerSnapshot, connector: _model.ReceiveConnector) -> dict:
    facts = _connector_facts(snapshot, connector, connector.accepts_cloud_services_mail)
    facts.update({
        "bindings": list(connector.bindings),
        "transport_role": connector.transport_role,
        "auth_mechanism": sorted(connector.auth_mechanism),
        "tls_domain_capabilities": list(connector.tls_domain_capabilities),
    })
    return facts


def _hybrid_facts(hybrid: _model.HybridConfiguration | None) -> dict | None:
    if hybrid is None:
        return None
    return {
        "tls_certificate_name": hybrid.tls_certificate_name,
        "sending_transport_servers": list(hybrid.sending_transport_servers),
        "receiving_transport_servers": list(hybrid.receiving_transport_servers),
        "edge_transport_servers": list(hybrid.edge_transport_servers),
        "domains": list(hybrid.domains),
        "on_premises_smart_host": hybrid.on_premises_smart_host,
        "features": list(hybrid.features),
    }


def _event_facts(event: _model.TransportEvent) -> dict:
    return {
        "time": _model.iso_utc(event.time_created),
        "id": event.event_id,
        "provider": event.provider_name,
        "level": event.level,
        "message": event.message,
        "untrusted_root": event.is_untrusted_root_2004,
    }


def _queue_facts(queue: _model.QueueInfo) -> dict:
    return {
        "identity": queue.identity,
        "delivery_type": queue.delivery_type,
        "next_hop_domain": queue.next_hop_domain,
        "status": queue.status,
        "message_count": queue.message_count,
        "last_error": queue.last_error,
        "last_retry_time": _model.iso_utc(queue.last_retry_time),
        "next_retry_time": _model.iso_utc(queue.next_retry_time),
    }


def server_facts(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping, now: datetime.datetime,
                 thumbprints: Iterable[str] | None = None) -> dict:
    """Everything certificate_info returns for one server; thumbprints limits the certificate list."""
    wanted = None if thumbprints is None else set(thumbprints)
    events = sorted(snapshot.events or (), key=lambda e: e.time_created or now, reverse=True)
    queues = snapshot.exchange_online_queues()
    return {
        # When the verdicts and days_remaining were computed; findings rebuilt later from these facts
        # judge expiry at the same instant (plugin_utils/_findings.py).
        "gathered_at": _model.iso_utc(now),
        "server": {
            "name": snapshot.server.name,
            "fqdn": snapshot.fqdn,
            "version": snapshot.server.version,
            "roles": sorted(snapshot.server.roles),
            "is_edge": snapshot.server.is_edge,
            "powershell": snapshot.powershell,
            # Exchange's ECC certificate support (setting override and registry value): true/false, null when unknown.
            "ecc_support": snapshot.ecc_support,
            "ecc_support_reason": snapshot.ecc_support_reason,
        },
        "hybrid_fqdns": list(snapshot.exposure.hybrid_fqdns),
        # What faces Exchange Online, as the planner sees it: findings read it instead of deriving it again.
        "exposure": snapshot.exposure.to_facts(),
        "internal_transport_certificate": snapshot.internal_transport_thumbprint,
        "certificates": [certificate_facts(snapshot, certificate, verdicts[certificate.thumbprint], now)
                         for certificate in snapshot.certificates if wanted is None or certificate.thumbprint in wanted],
        "send_connectors": [send_connector_facts(snapshot, c) for c in snapshot.send_connectors],
        "receive_connectors": [receive_connector_facts(snapshot, c) for c in snapshot.receive_connectors],
        "hybrid_configuration": _hybrid_facts(snapshot.hybrid),
        "events": [_event_facts(event) for event in events],
        "exchange_online_queue": _queue_facts(queues[0]) if queues else None,
        "tls12": dict(snapshot.tls) if snapshot.tls is not None else None,
        "warnings": ["%s (%s) failed: %s" % (f.cmdlet, f.call_id, f.message) for f in snapshot.failures],
    }

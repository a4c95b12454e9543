# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which certificate faces Exchange Online: worked out once per snapshot, read by everything else.

The planner (_plan), the facts (_facts) and the findings (_findings) all need the same answers: which
connectors carry mail to or from Exchange Online, the name each selects certificates by, the names
Exchange Online checks, and the certificates each may present. They are computed here, from the
snapshot alone (trust plays no part in what transport selects), and carried in the facts under
"exposure", so that findings rebuilt from stored JSON read the same answers instead of deriving them
again. Pure Python, no Ansible imports.

How transport selects (exchange-facts.md, KB 2888788):
- TlsCertificateName empty: any certificate enabled for SMTP, with its private key, whose
  CertificateDomains match the connector's FQDN (the server FQDN when it has none); Exchange
  documents no tie-break, so every such certificate may be presented.
- TlsCertificateName set: the certificate it names (issuer and subject), the one expiring last when
  several match - whatever its services and key: transport then fails (UnknownCredentials) rather
  than fall back to another one.
- TlsCertificateName malformed or naming nothing on the server: nothing is presented (454 4.7.5).
Disabled connectors are listed but present nothing.

Which names Exchange Online checks: the send connector's FQDN for mail to Exchange Online; for mail
from it, the hybrid configuration's OnPremisesSmartHost (the name Exchange Online connects to) or the
names this server's cloud send connectors present (the Hybrid Configuration Wizard gives both the
same certificate; an Edge server cannot read the hybrid configuration), else the receive connector's
own FQDN.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

from . import _model

SEND = "send"
RECEIVE = "receive"

# The state of a connector's TlsCertificateName.
EMPTY = "empty"
MALFORMED = "malformed"
NOT_FOUND = "not_found"
RESOLVED = "resolved"

SMTP = "SMTP"


@dataclasses.dataclass(frozen=True)
class Connector:
    """A send or receive connector that carries mail to or from Exchange Online."""

    kind: str  # SEND or RECEIVE
    identity: str
    enabled: bool
    selection_name: str  # what transport matches certificates against when TlsCertificateName is empty
    exchange_online_names: tuple[str, ...]  # what Exchange Online may check the certificate against, preferred first
    tls_certificate_name: str | None
    pin: str  # EMPTY, MALFORMED, NOT_FOUND, RESOLVED
    pin_problem: str | None  # why a TlsCertificateName is malformed
    named: tuple[str, ...]  # thumbprints its TlsCertificateName names, the one Exchange selects first
    presents: tuple[str, ...]  # thumbprints it may present to Exchange Online (none while disabled)
    shared_with: tuple[str, ...] = ()  # send connectors: the other source servers a change affects too

    @property
    def label(self) -> str:
        return "%s connector '%s'" % (self.kind, self.identity)

    @property
    def selected(self) -> str | None:
        """The thumbprint its TlsCertificateName selects."""
        return self.named[0] if self.named else None

    def to_facts(self) -> dict:
        return {
            "kind": self.kind, "identity": self.identity, "enabled": self.enabled, "selection_name": self.selection_name,
            "exchange_online_names": list(self.exchange_online_names), "tls_certificate_name": self.tls_certificate_name,
            "pin": self.pin, "pin_problem": self.pin_problem, "named": list(self.named), "presents": list(self.presents),
            "shared_with": list(self.shared_with),
        }

    @classmethod
    def from_facts(cls, data: Mapping) -> Connector:
        return cls(
            kind=str(data.get("kind")), identity=str(data.get("identity") or "?"), enabled=data.get("enabled") is not False,
            selection_name=str(data.get("selection_name") or ""),
            exchange_online_names=tuple(str(name) for name in data.get("exchange_online_names") or ()),
            tls_certificate_name=data.get("tls_certificate_name"), pin=str(data.get("pin") or EMPTY),
            pin_problem=data.get("pin_problem"),
            named=tuple(_model.normalize_thumbprint(t) for t in data.get("named") or ()),
            presents=tuple(_model.normalize_thumbprint(t) for t in data.get("presents") or ()),
            shared_with=tuple(str(server) for server in data.get("shared_with") or ()),
        )


@dataclasses.dataclass(frozen=True)
class Exposure:
    connectors: tuple[Connector, ...]  # every cloud connector of this server, disabled ones too
    referenced: frozenset[str]  # thumbprints some TlsCertificateName names (any connector, the hybrid configuration)
    hybrid_fqdns: tuple[str, ...]  # the names this server presents to Exchange Online and selects certificates by

    @property
    def active(self) -> tuple[Connector, ...]:
        return tuple(c for c in self.connectors if c.enabled)

    def facing(self, thumbprint: str) -> tuple[Connector, ...]:
        """The enabled cloud connectors that may present this certificate to Exchange Online."""
        return tuple(c for c in self.active if thumbprint in c.presents)

    def faces_exchange_online(self, thumbprint: str) -> bool:
        return any(thumbprint in c.presents for c in self.active)

    @property
    def exchange_online_names(self) -> tuple[str, ...]:
        """Every name Exchange Online checks certificates against here: what a certificate must be trusted for."""
        return tuple(dict.fromkeys(name for c in self.active for name in c.exchange_online_names))

    def to_facts(self) -> dict:
        return {"connectors": [c.to_facts() for c in self.connectors], "referenced": sorted(self.referenced),
                "hybrid_fqdns": list(self.hybrid_fqdns)}

    @classmethod
    def from_facts(cls, data) -> Exposure:
        """The exposure a snapshot's facts carry; an empty one for facts without it (not a mapping)."""
        if not isinstance(data, Mapping):
            return cls((), frozenset(), ())
        return cls(
            connectors=tuple(Connector.from_facts(c) for c in data.get("connectors") or () if isinstance(c, Mapping)),
            referenced=frozenset(_model.normalize_thumbprint(t) for t in data.get("referenced") or ()),
            hybrid_fqdns=tuple(str(name) for name in data.get("hybrid_fqdns") or ()),
        )


def _presents(certificates, connector, selection_name: str, named) -> tuple[str, ...]:
    if connector.enabled is False:
        return ()
    if not connector.tls_certificate_name:
        return tuple(c.thumbprint for c in certificates
                     if SMTP in c.services and c.has_private_key is not False and _model.exchange_domain_matches(selection_name, c))
    return named[:1]


def _pin(tls_certificate_name, certificates) -> tuple[str, str | None, tuple[str, ...]]:
    """(pin state, problem, thumbprints named, the selected one first)."""
    if not tls_certificate_name:
        return EMPTY, None, ()
    problem = _model.tls_certificate_name_problem(tls_certificate_name)
    parsed = _model.parse_tls_certificate_name(tls_certificate_name)
    if problem or parsed is None:
        return MALFORMED, problem or "cannot be read as <I>issuer<S>subject", ()
    named = tuple(c.thumbprint for c in _model.certificates_matching_tls_name(parsed, certificates))
    return (RESOLVED if named else NOT_FOUND), None, named


def of(server_fqdn: str, server_name: str | None, certificates: Iterable[_model.Certificate], send_connectors: Iterable,
       receive_connectors: Iterable, hybrid: _model.HybridConfiguration | None) -> Exposure:
    """The exposure of one server. send_connectors: those this server is a source of."""
    certificates = tuple(certificates)
    own = _model.server_name_key(server_name)
    send_connectors, receive_connectors = tuple(send_connectors), tuple(receive_connectors)
    connectors = []
    for connector in send_connectors:
        if not connector.is_cloud:
            continue
        name = (connector.fqdn or server_fqdn).lower()
        pin, problem, named = _pin(connector.tls_certificate_name, certificates)
        connectors.append(Connector(
            SEND, connector.identity or connector.name or "", connector.enabled is not False, name, (name,),
            connector.tls_certificate_name, pin, problem, named, _presents(certificates, connector, name, named),
            tuple(s for s in connector.source_transport_servers if _model.server_name_key(s) != own)))
    smart_host = (hybrid.on_premises_smart_host or "").strip().lower() if hybrid else ""
    inbound = tuple(dict.fromkeys(([smart_host] if smart_host else []) + [c.selection_name for c in connectors if c.enabled]))
    for connector in receive_connectors:
        if not connector.accepts_cloud_services_mail:
            continue
        name = (connector.fqdn or server_fqdn).lower()
        pin, problem, named = _pin(connector.tls_certificate_name, certificates)
        connectors.append(Connector(
            RECEIVE, connector.identity or connector.name or "", connector.enabled is not False, name, inbound or (name,),
            connector.tls_certificate_name, pin, problem, named, _presents(certificates, connector, name, named)))
    referenced = set()
    for connector in send_connectors + receive_connectors:
        referenced.update(_pin(connector.tls_certificate_name, certificates)[2])
    if hybrid is not None:
        referenced.update(_pin(hybrid.tls_certificate_name, certificates)[2])
    # A pinned receive connector's FQDN no longer selects a certificate (the wizard pins "Default
    # Frontend" and leaves its Fqdn at the internal server name); a send connector's FQDN is what it
    # presents in EHLO whether pinned or not.
    fqdns = tuple(dict.fromkeys(c.selection_name for c in connectors if c.enabled and (c.kind == SEND or c.pin == EMPTY)))
    return Exposure(tuple(connectors), frozenset(referenced), fqdns)

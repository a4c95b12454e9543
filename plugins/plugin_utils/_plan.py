# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The desired state of SMTP certificates and cloud connectors, and the steps that reach it.

Pure Python, no Ansible imports. Input: a ServerSnapshot, the trust verdicts _facts.evaluate() gave
for it, and the module's options. Output: an assessment (a state per certificate and per cloud
connector) and a Plan (ordered steps, or the blockers that forbid any step).

Two facts from exchange-facts.md shape everything here:
- Enable-ExchangeCertificate is documented as *additive* while KB 2888788 uses it to *replace* the
  services. Every Enable step therefore passes the complete list the certificate should end up with
  (its current services plus or minus SMTP): correct under either reading, and never a service the
  certificate did not have, except SMTP where SMTP is the point. Under the additive reading SMTP
  stays on an untrusted certificate; pinning the cloud connectors to a trusted certificate through
  TlsCertificateName is the fallback that works under both, and makes such a certificate `mitigated`.
- Enabling SMTP needs -Force, which silently makes that certificate the internal transport
  certificate; the previous one is restored right after, as Microsoft's own scripts do.

Which connectors carry mail to or from Exchange Online, the name each selects certificates by, the
names Exchange Online checks and the certificates each may present come from the snapshot's
exposure (_exposure.py), which the facts and the findings read too. The interlock and the choice of
the pinned certificate use the Exchange Online names; exposure of untrusted certificates uses what
the connectors present.

Send connectors are organisation-wide: pinning one from this server changes it for every source
server. A pin step therefore names the other source servers, and the enforcer checks in the same
round trip that each holds the very certificate pinned (same thumbprint, with its private key).

The internal transport certificate and the Auth certificate are invariants, not special cases: the
state a plan leaves (its steps played as Exchange runs them, under the "replace" reading, which is
the worst case for SMTP) must keep SMTP on the internal transport certificate the plan intends and
touch neither the Auth certificate nor a listed one; a plan that would not, or that is made while the
internal transport certificate is unknown, is refused whole (`invariant_violations`). Breaking
internal mail flow between Exchange servers is worse than any finding the plan would fix.

Dropping SMTP is also the one step that reaches beyond Exchange Online: a receive connector that
serves clients or other servers (Client Frontend) may need the certificate for STARTTLS. When the
plan's pins already take a certificate out of Exchange Online's reach and such a connector needs it,
it keeps SMTP (other_receive_connectors_using).

A converged server plans no step, so that a second run changes nothing. A certificate that is
`mitigated` counts as converged: dropping SMTP is tried while the certificate is exposed, not again
afterwards (under the additive reading the attempt would only re-assert its other services).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Iterable, Mapping

from . import _exposure, _model, _snapshot, _trust
from ._catalogue import ECC_OVERRIDE_ADVICE

SMTP = "SMTP"
SCOPES = ("hybrid", "all")

# Step actions; a plan runs them in this order, each kind after the previous one, so that every
# prefix of a plan (a batch that stopped at a failed mutation) leaves mail flow no worse than before.
ENABLE_SMTP = "enable_smtp"
RESTORE_INTERNAL_TRANSPORT = "restore_internal_transport"
DROP_SMTP = "drop_smtp"
PIN_CONNECTOR = "pin_connector"
REMOVE_CERTIFICATE = "remove_certificate"
STEP_ORDER = (ENABLE_SMTP, RESTORE_INTERNAL_TRANSPORT, DROP_SMTP, PIN_CONNECTOR, REMOVE_CERTIFICATE)

# Certificate states.
COMPLIANT = "compliant"  # trusted, or not enabled for SMTP
MITIGATED = "mitigated"  # untrusted and still enabled for SMTP, but no cloud connector can offer it
NONCOMPLIANT = "noncompliant"  # untrusted, and a cloud connector can offer it (or scope all: enabled for SMTP)
EXEMPT = "exempt"  # never touched: the Auth certificate, the internal transport certificate, listed ones
OUT_OF_SCOPE = "out_of_scope"

# Why a certificate is exempt.
AUTH_CERTIFICATE = "auth_certificate"
INTERNAL_TRANSPORT = "internal_transport"
LISTED = "listed"

# Connector states.
PINNED = "pinned"  # TlsCertificateName selects a trusted, SMTP-enabled certificate for its Exchange Online name
UNPINNED = "unpinned"  # no TlsCertificateName: transport picks by FQDN
BROKEN = "broken"  # TlsCertificateName set, but what it selects cannot work

SEND = _exposure.SEND
RECEIVE = _exposure.RECEIVE

_OLDEST = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Step:
    """One mutation. Enable steps carry the complete -Services value (see the module docstring)."""

    action: str  # one of STEP_ORDER
    target: str  # a thumbprint, or a connector identity for PIN_CONNECTOR
    reason: str  # why, for humans
    services: frozenset[str] | None = None  # Enable steps: all the services the certificate should end with
    force: bool = False  # -Force: the only way to enable SMTP unattended (it replaces the internal transport certificate)
    connector_kind: str | None = None  # PIN_CONNECTOR
    tls_certificate_name: str | None = None  # PIN_CONNECTOR: the new value
    certificate: str | None = None  # PIN_CONNECTOR: the thumbprint the new value selects here
    shared_with: tuple[str, ...] = ()  # PIN_CONNECTOR: other servers that must hold that certificate

    def describe(self) -> str:
        if self.action == PIN_CONNECTOR:
            text = "set TlsCertificateName of %s connector '%s' to %s" % (self.connector_kind, self.target, self.tls_certificate_name)
            if self.shared_with:
                # A send connector is organisation-wide: the pin changes what its other source servers present
                # too, whichever batch of a rollout they are in.
                shown = ", ".join(self.shared_with[:10]) + (" and %d more" % (len(self.shared_with) - 10) if len(self.shared_with) > 10 else "")
                text += " (organisation-wide: also changes the certificate %s present to Exchange Online)" % shown
            return text
        if self.action == REMOVE_CERTIFICATE:
            return "remove certificate %s" % self.target
        what = {ENABLE_SMTP: "enable SMTP on %s", RESTORE_INTERNAL_TRANSPORT: "restore %s as the internal transport certificate",
                DROP_SMTP: "drop SMTP from %s"}[self.action] % self.target
        return "%s (services: %s)" % (what, format_services(self.services))


@dataclasses.dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    blockers: tuple[str, ...]  # the interlock: why nothing may change; steps is empty when there is one
    notes: tuple[str, ...]  # what the admin should know although it does not block
    internal_transport_thumbprint: str | None  # what it is and must still be after the steps

    @property
    def blocked(self) -> bool:
        return bool(self.blockers)


@dataclasses.dataclass(frozen=True)
class SmtpOptions:
    scope: str = "hybrid"
    exempt_thumbprints: frozenset[str] = frozenset()
    remove_untrusted: bool = False
    pin_connectors: bool = True


@dataclasses.dataclass(frozen=True)
class CertificateAssessment:
    thumbprint: str
    state: str
    trusted: bool
    in_scope: bool
    exempt: str | None  # AUTH_CERTIFICATE, INTERNAL_TRANSPORT, LISTED
    exposed_by: tuple[str, ...]  # labels of the cloud connectors that can offer it to Exchange Online


@dataclasses.dataclass(frozen=True)
class ConnectorAssessment:
    connector: _exposure.Connector
    state: str  # PINNED, UNPINNED, BROKEN
    selected: str | None  # thumbprint of the certificate TlsCertificateName selects
    problem: str | None  # why BROKEN


# ---------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------

# .NET prints the AllowedServices flags in ascending value order; the runner and the lab do the same.
_SERVICE_ORDER = ("IMAP", "POP", "UM", "IIS", "SMTP", "Federation", "UMCallRouter")


def format_services(services: Iterable[str]) -> str:
    """A -Services value: "IMAP, POP, IIS, SMTP"; "None" for no service at all (the enum's zero)."""
    services = set(services)
    ordered = [name for name in _SERVICE_ORDER if name in services] + sorted(services - set(_SERVICE_ORDER))
    return ", ".join(ordered) or "None"


# ---------------------------------------------------------------------------------------------
# Connectors and certificates
# ---------------------------------------------------------------------------------------------


def cloud_connectors(snapshot: _snapshot.ServerSnapshot) -> tuple[_exposure.Connector, ...]:
    """The enabled cloud connectors, as _exposure sees them."""
    return snapshot.exposure.active


def _certificate(snapshot: _snapshot.ServerSnapshot, thumbprint: str | None) -> _model.Certificate | None:
    return next((c for c in snapshot.certificates if c.thumbprint == thumbprint), None)


def _smtp_thumbprints(snapshot: _snapshot.ServerSnapshot) -> frozenset[str]:
    return frozenset(c.thumbprint for c in snapshot.certificates if SMTP in c.services)


def selected_certificate(snapshot: _snapshot.ServerSnapshot, tls_certificate_name: str | None) -> _model.Certificate | None:
    """The certificate Exchange uses for a TlsCertificateName: of those it names, the latest to expire."""
    named = snapshot.certificates_named_by(tls_certificate_name)
    return named[0] if named else None


def _trusted(verdicts: Mapping, certificate: _model.Certificate) -> bool:
    verdict = verdicts.get(certificate.thumbprint)
    return bool(verdict and verdict.trusted)


def _covers(certificate: _model.Certificate, names: Iterable[str]) -> bool:
    return any(_model.name_matches(name, certificate) for name in names)


def _usable(verdicts: Mapping, certificate: _model.Certificate, names: Iterable[str], smtp: frozenset[str]) -> bool:
    """Exchange Online accepts it for one of names, and transport can present it (enabled for SMTP)."""
    return _trusted(verdicts, certificate) and certificate.thumbprint in smtp and _covers(certificate, names)


def _dates(certificate: _model.Certificate) -> tuple:
    facts = certificate.x509
    return (facts.not_after, facts.not_before) if facts else (_OLDEST, _OLDEST)


def best_certificate(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping, names: Iterable[str], smtp: frozenset[str] | None,
                     excluded: Iterable[str] = ()) -> tuple[_model.Certificate | None, str | None]:
    """(the certificate to pin or enable for the first of names that has one, a note when it differs
    from the hybrid configuration).

    Candidates are trusted, cover the name, are enabled for SMTP (unless smtp is None: any may be
    enabled), and are what their own TlsCertificateName would select (another certificate with the
    same issuer and subject that expires later would be used instead). Those matching
    Get-HybridConfiguration's TlsCertificateName come first, so that every hybrid server pins the
    same name; then the newest (latest NotAfter, then NotBefore; the thumbprint breaks ties so that
    every run picks the same one).
    """
    excluded = set(excluded)
    for name in names:
        candidates = [
            c for c in snapshot.certificates
            if c.thumbprint not in excluded
            and _trusted(verdicts, c)
            and _model.name_matches(name, c)
            and (smtp is None or c.thumbprint in smtp)
            and selected_certificate(snapshot, _model.tls_certificate_name_of(c)) is c
        ]
        if not candidates:
            continue
        hybrid_name = snapshot.hybrid.tls_certificate_name if snapshot.hybrid else None
        preferred = [c for c in candidates if c in snapshot.certificates_named_by(hybrid_name)]
        chosen = max(preferred or candidates, key=lambda c: (_dates(c), c.thumbprint))
        note = None
        if hybrid_name and not preferred:
            note = ("Get-HybridConfiguration's TlsCertificateName %s names no usable certificate for %s; %s was chosen. "
                    "Run the Hybrid Configuration Wizard again so that the organisation names it too."
                    % (hybrid_name, name, chosen.thumbprint))
        return chosen, note
    return None, None


def _connector_problem(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping, connector: _exposure.Connector,
                       smtp: frozenset[str]) -> tuple[_model.Certificate | None, str | None]:
    """(the certificate its TlsCertificateName selects, why that cannot work or None)."""
    malformed = _model.tls_certificate_name_problem(connector.tls_certificate_name)
    if malformed:
        return None, "TlsCertificateName %s" % malformed
    selected = selected_certificate(snapshot, connector.tls_certificate_name)
    if selected is None:
        return None, "TlsCertificateName names no certificate on this server"
    if not _trusted(verdicts, selected):
        codes = verdicts[selected.thumbprint].codes if selected.thumbprint in verdicts else ()
        return selected, "TlsCertificateName selects %s, which Exchange Online does not trust (%s)" % (
            selected.thumbprint, ", ".join(codes) or "no verdict")
    if selected.thumbprint not in smtp:
        return selected, "TlsCertificateName selects %s, which is not enabled for SMTP (UnknownCredentials)" % selected.thumbprint
    if not _covers(selected, connector.exchange_online_names):
        return selected, "TlsCertificateName selects %s, which does not cover %s" % (
            selected.thumbprint, " or ".join(connector.exchange_online_names))
    return selected, None


def assess_connector(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping, connector: _exposure.Connector,
                     smtp: frozenset[str] | None = None) -> ConnectorAssessment:
    if not connector.tls_certificate_name:
        return ConnectorAssessment(connector, UNPINNED, None, None)
    selected, problem = _connector_problem(snapshot, verdicts, connector, _smtp_thumbprints(snapshot) if smtp is None else smtp)
    return ConnectorAssessment(connector, BROKEN if problem else PINNED, selected.thumbprint if selected else None, problem)


def exemptions(snapshot: _snapshot.ServerSnapshot, options: SmtpOptions, internal_transport: Iterable[str] | None = None) -> dict:
    """thumbprint -> why nothing may touch it. internal_transport: the thumbprints protected as the
    internal transport certificate (default: the current one; a plan that restores another protects both)."""
    protected = {snapshot.internal_transport_thumbprint} if internal_transport is None else set(internal_transport)
    exempt = {}
    for certificate in snapshot.certificates:
        if certificate.is_auth_certificate:
            exempt[certificate.thumbprint] = AUTH_CERTIFICATE
        elif certificate.thumbprint in options.exempt_thumbprints:
            exempt[certificate.thumbprint] = LISTED
        elif certificate.thumbprint in protected:
            exempt[certificate.thumbprint] = INTERNAL_TRANSPORT
    return exempt


def _faces_hybrid(snapshot: _snapshot.ServerSnapshot, connectors: Iterable[_exposure.Connector], certificate: _model.Certificate) -> bool:
    """Its names cover a name of a cloud connector (pinned or not: scope must not change when the
    plan pins), or a TlsCertificateName toward Exchange Online names it."""
    names = {name for c in connectors for name in (c.selection_name,) + c.exchange_online_names}
    if any(_model.exchange_domain_matches(name, certificate) for name in names) or any(
            certificate.thumbprint in c.named for c in connectors):
        return True
    # The organisation-wide name matters only where the wizard applies it.
    return snapshot.is_hybrid_transport_server and certificate in snapshot.certificates_named_by(snapshot.hybrid.tls_certificate_name)


def assess(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping, options: SmtpOptions = SmtpOptions(),
           internal_transport: Iterable[str] | None = None) -> tuple:
    """(certificate assessments, connector assessments) of the snapshot as it is. internal_transport:
    as for exemptions()."""
    connectors = tuple(assess_connector(snapshot, verdicts, c) for c in cloud_connectors(snapshot))
    exempt = exemptions(snapshot, options, internal_transport)
    certificates = []
    for certificate in snapshot.certificates:
        trusted = _trusted(verdicts, certificate)
        faces_hybrid = _faces_hybrid(snapshot, [a.connector for a in connectors], certificate)
        in_scope = faces_hybrid or (options.scope == "all" and SMTP in certificate.services)
        exposed_by = () if trusted else tuple(a.connector.label for a in connectors if certificate.thumbprint in a.connector.presents)
        if certificate.thumbprint in exempt:
            state = EXEMPT
        elif not in_scope:
            state = OUT_OF_SCOPE
        elif trusted:
            state = COMPLIANT
        elif exposed_by:
            state = NONCOMPLIANT
        elif SMTP not in certificate.services:
            state = COMPLIANT
        elif faces_hybrid:
            state = MITIGATED
        else:
            state = NONCOMPLIANT  # scope all: an untrusted certificate enabled for SMTP, whatever its names
        certificates.append(CertificateAssessment(certificate.thumbprint, state, trusted, in_scope,
                                                  exempt.get(certificate.thumbprint), exposed_by))
    return tuple(certificates), connectors


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


def _describe_certificate(certificate: _model.Certificate, verdicts: Mapping) -> str:
    facts = certificate.x509
    subject = certificate.reported_subject or (facts.subject_windows if facts else "?")
    issuer = certificate.reported_issuer or (facts.issuer_windows if facts else "?")
    verdict = verdicts.get(certificate.thumbprint)
    judged = ", ".join(verdict.codes) if verdict and verdict.codes else "trusted"
    return "%s (%s, issued by %s, services %s): %s" % (
        certificate.thumbprint, subject, issuer, format_services(certificate.services), judged)


def is_ecc(certificate: _model.Certificate) -> bool:
    return certificate.x509 is not None and certificate.x509.key_type == "EC"


def ecc_support_problem(snapshot: _snapshot.ServerSnapshot) -> str:
    """Why this server's ECC support is not known to be on (snapshot.ecc_support is not True)."""
    return snapshot.ecc_support_reason or "whether Exchange's ECC certificate support is enabled on this server is unknown"


def ecc_unsupported(snapshot: _snapshot.ServerSnapshot, connector: _exposure.Connector, certificate: _model.Certificate) -> str:
    """The refusal to enable SMTP on an ECC certificate where Exchange's ECC support is not known to be on:
    Enable-ExchangeCertificate fails there with KeyAlgorithmUnsupported, half-way through a plan."""
    return ("%s: %s (Exchange Online checks it for %s): the trusted certificate for it, %s, has an ECC key, and %s, so "
            "Enable-ExchangeCertificate would fail with KeyAlgorithmUnsupported. %s Then run again; nothing was changed."
            % (snapshot.host, " or ".join(connector.exchange_online_names), connector.label, certificate.thumbprint,
               ecc_support_problem(snapshot), ECC_OVERRIDE_ADVICE))


def _nothing_trusted(snapshot, verdicts, connector: _exposure.Connector, needs_smtp_hint: bool) -> str:
    """The interlock's message: the server, the name, what to install (or enable)."""
    name = connector.exchange_online_names[0]
    names = " or ".join(connector.exchange_online_names)
    covering = [c for c in snapshot.certificates if _covers(c, connector.exchange_online_names)]
    message = ("%s: %s (Exchange Online checks it for %s) has no certificate Exchange Online would trust. "
               "Install a certificate for %s issued by a CA in the Microsoft Trusted Root Program, with its "
               "private key and intermediate certificates, then run again; nothing was changed."
               % (snapshot.host, names, connector.label, name))
    trusted_off = [c.thumbprint for c in covering if _trusted(verdicts, c) and SMTP not in c.services] if needs_smtp_hint else []
    # Trusted but for intermediates the server lacks: the fix is importing them, not another certificate.
    chain_only = [verdicts[c.thumbprint] for c in covering if c.has_private_key is not False and c.thumbprint in verdicts
                  and tuple(verdicts[c.thumbprint].codes) == (_trust.INCOMPLETE_CHAIN,)]
    if trusted_off:
        message = ("%s: %s (Exchange Online checks it for %s) has no trusted certificate enabled for SMTP. "
                   "Enable SMTP on %s (hybridmail.exchange.smtp_certificate does it safely), then run again; "
                   "nothing was changed." % (snapshot.host, names, connector.label, " or ".join(trusted_off)))
    elif chain_only:
        message = ("%s: %s (Exchange Online checks it for %s) has no certificate Exchange Online would trust: %s chain%s to a "
                   "trusted root only through intermediates this server does not hold. %s Then run again; nothing was changed."
                   % (snapshot.host, names, connector.label, " and ".join(v.thumbprint for v in chain_only),
                      "" if len(chain_only) > 1 else "s",
                      _trust.import_intermediates_advice((link.subject, link.thumbprint) for v in chain_only for link in v.missing_intermediates)))
    issuers = list(dict.fromkeys(verdicts[c.thumbprint].missing_issuer for c in covering if c.thumbprint in verdicts
                                 and tuple(verdicts[c.thumbprint].codes) == (_trust.UNKNOWN_ROOT,) and verdicts[c.thumbprint].missing_issuer))
    if issuers and not trusted_off and not chain_only:
        # With a trust bundle of roots only, a missing public intermediate reads as unknown_root.
        message += (" The server holds no certificate for the issuer %s: if it is a public CA's intermediate, import it into the "
                    "Intermediate Certification Authorities store (Import-Certificate -CertStoreLocation Cert:\\LocalMachine\\CA) "
                    "instead." % " and ".join(issuers))
    if covering:
        message += " Certificates covering it: %s." % "; ".join(_describe_certificate(c, verdicts) for c in covering)
    return message


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def edge_sync_note(snapshot: _snapshot.ServerSnapshot, connector: _exposure.Connector, why: str) -> str | None:
    """Why this server must not change the connector, or None when it may.

    On an Edge Transport server the send connectors are the organisation's, replicated by EdgeSync:
    subscribing an Edge deletes its own send connectors and locks their management there (Microsoft
    Learn, "Edge Subscriptions"), so a change is made on a Mailbox server and EdgeSync copies it."""
    if connector.kind != SEND or not snapshot.server.is_edge:
        return None
    return ("%s: %s: %s; EdgeSync replicates it to this Edge Transport server, so set its TlsCertificateName on a "
            "Mailbox server (Set-SendConnector -Identity '%s' -TlsCertificateName '<I>issuer<S>subject'), and EdgeSync "
            "copies it here (Start-EdgeSynchronization to hurry)" % (snapshot.host, connector.label, why, connector.identity))


def _pin_step(snapshot, connector: _exposure.Connector, chosen: _model.Certificate, why: str) -> Step | None:
    """The step that makes the connector select chosen; None when it already does."""
    if selected_certificate(snapshot, connector.tls_certificate_name) is chosen:
        return None
    return Step(PIN_CONNECTOR, connector.identity, "%s; %s is the best trusted certificate for %s" % (
        why, chosen.thumbprint, " or ".join(connector.exchange_online_names)),
        connector_kind=connector.kind, tls_certificate_name=_model.tls_certificate_name_of(chosen),
        certificate=chosen.thumbprint, shared_with=connector.shared_with)


def other_receive_connectors_using(snapshot: _snapshot.ServerSnapshot, certificate: _model.Certificate) -> list:
    """Identities of the enabled receive connectors that do not face Exchange Online (Client Frontend,
    the internal ones) whose STARTTLS needs this certificate: their TlsCertificateName selects it, or,
    when it is empty, it is the only SMTP certificate with its key whose domains match the connector's
    FQDN (the same selection rule as for the cloud connectors, _exposure). Without SMTP on it, such a
    connector has no certificate to offer."""
    if SMTP not in certificate.services or certificate.has_private_key is False:
        return []
    users = []
    for connector in snapshot.receive_connectors:
        if connector.enabled is False or connector.accepts_cloud_services_mail:
            continue
        if connector.tls_certificate_name:
            selected = selected_certificate(snapshot, connector.tls_certificate_name)
            needs = selected is not None and selected.thumbprint == certificate.thumbprint
        else:
            name = connector.fqdn or snapshot.fqdn
            candidates = [c.thumbprint for c in snapshot.certificates
                          if SMTP in c.services and c.has_private_key is not False and _model.exchange_domain_matches(name, c)]
            needs = candidates == [certificate.thumbprint]
        if needs:
            users.append(connector.identity or connector.name or "?")
    return users


def _removal_obstacles(snapshot: _snapshot.ServerSnapshot, certificate: _model.Certificate, pinned: Mapping) -> list:
    """Why removing this certificate is not safe (empty: it is). pinned: identity -> TlsCertificateName
    that the plan sets."""
    obstacles = []
    others = certificate.services - {SMTP}
    if others:
        obstacles.append("it is also enabled for %s" % format_services(others))
    if certificate.thumbprint == snapshot.internal_transport_thumbprint:
        obstacles.append("it is the internal transport certificate")
    if certificate.is_auth_certificate:
        obstacles.append("it is the Exchange Server Auth certificate")
    for connector in snapshot.send_connectors + snapshot.receive_connectors:
        name = pinned.get(connector.identity, connector.tls_certificate_name)
        if certificate in snapshot.certificates_named_by(name):
            obstacles.append("connector '%s' names it in TlsCertificateName" % connector.identity)
    users = other_receive_connectors_using(snapshot, certificate)
    if users:
        obstacles.append("%s need%s it for STARTTLS" % (", ".join("receive connector '%s'" % c for c in users), "" if len(users) > 1 else "s"))
    if snapshot.hybrid is not None and certificate in snapshot.certificates_named_by(snapshot.hybrid.tls_certificate_name):
        obstacles.append("Get-HybridConfiguration's TlsCertificateName names it (run the Hybrid Configuration Wizard "
                         "with the trusted certificate first)")
    return obstacles


def with_pins(snapshot: _snapshot.ServerSnapshot, pinned: Mapping) -> _snapshot.ServerSnapshot:
    """The snapshot as it will be once the planned pins (identity -> TlsCertificateName) are set."""
    def repinned(connectors):
        return tuple(dataclasses.replace(c, tls_certificate_name=pinned[c.identity]) if c.identity in pinned else c
                     for c in connectors)
    return dataclasses.replace(snapshot, send_connectors=repinned(snapshot.send_connectors),
                               receive_connectors=repinned(snapshot.receive_connectors))


def _ordered(steps: Iterable[Step]) -> tuple[Step, ...]:
    # Within a kind, what concerns only this server comes before what other servers share (an
    # organisation-wide send connector): a check on those servers may stop the batch there.
    return tuple(sorted(steps, key=lambda step: (STEP_ORDER.index(step.action), bool(step.shared_with))))


def _plan(steps, blockers, notes, itc) -> Plan:
    if blockers:
        return Plan((), tuple(dict.fromkeys(blockers)), tuple(dict.fromkeys(notes)), itc)
    return Plan(_ordered(steps), (), tuple(dict.fromkeys(notes)), itc)


def own_self_signed_certificate(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping) -> _model.Certificate | None:
    """The server's self-signed "Microsoft Exchange" certificate (CN=<server>), usable for internal
    transport: private key, SMTP, within its dates."""
    own_subject = "cn=%s" % (snapshot.server.name or snapshot.computer_name or "").lower()
    for certificate in snapshot.certificates:
        facts = certificate.x509
        if (facts is not None and facts.self_signed and certificate.has_private_key and SMTP in certificate.services
                and (certificate.reported_subject or facts.subject_windows).lower() == own_subject
                and not {"expired", "not_yet_valid"} & set(verdicts[certificate.thumbprint].codes)):
            return certificate
    return None


def internal_transport_to_restore(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping,
                                  connectors: Iterable[_exposure.Connector]) -> _model.Certificate | None:
    """The certificate to put back as the internal transport certificate, or None.

    Enabling SMTP with -Force makes that certificate the internal transport certificate; a run whose
    restore step then failed leaves it so. When the internal transport certificate is one facing
    Exchange Online rather than the server's own self-signed certificate, and that one is still there
    and usable, the plan restores it (Microsoft recommends keeping the self-signed one for internal
    transport, CSS-Exchange InternalTransportCertificateCheck)."""
    current = _certificate(snapshot, snapshot.internal_transport_thumbprint)
    # Only a trusted one: that is what -Force put there. An untrusted one would, once no longer the
    # exempt internal transport certificate, need a second run to lose SMTP.
    if (current is None or current.x509 is None or current.x509.self_signed or not _trusted(verdicts, current)
            or not _faces_hybrid(snapshot, connectors, current)):
        return None
    return own_self_signed_certificate(snapshot, verdicts)


def restore_step(previous: _model.Certificate, forced: str) -> Step:
    """The step that makes previous the internal transport certificate again after Enable-ExchangeCertificate
    -Force made forced (a thumbprint) it: Microsoft's own pattern (CSS-Exchange New-ExchangeAuthCertificate.ps1),
    with the certificate's complete services so that KB 2888788's "replace" reading cannot strip them."""
    return Step(RESTORE_INTERNAL_TRANSPORT, previous.thumbprint, "enabling SMTP with -Force made %s the internal transport "
                "certificate; restore the previous one" % forced, services=previous.services | {SMTP}, force=True)


@dataclasses.dataclass
class _Planning:
    """What the phases of plan_smtp_certificate share: the inputs, and the steps, blockers and notes so far."""

    snapshot: _snapshot.ServerSnapshot
    verdicts: Mapping
    options: SmtpOptions
    itc: str | None  # what the internal transport certificate must be after the steps
    protected: set  # it and the current one (a restore must not be followed by a step that drops SMTP from it)
    exempt: dict
    smtp: frozenset  # the SMTP certificates, growing with those the plan enables
    steps: list = dataclasses.field(default_factory=list)
    blockers: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    pinned: dict = dataclasses.field(default_factory=dict)  # connector identity -> the TlsCertificateName the plan sets

    @property
    def connectors(self) -> tuple[_exposure.Connector, ...]:
        return cloud_connectors(self.snapshot)


def plan_smtp_certificate(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping, options: SmtpOptions = SmtpOptions()) -> Plan:
    """The steps that leave only trusted certificates able to reach Exchange Online over SMTP."""
    # A certificate the user lists in exempt_thumbprints stays the internal transport certificate if it is.
    healed = (internal_transport_to_restore(snapshot, verdicts, cloud_connectors(snapshot))
              if snapshot.internal_transport_thumbprint not in options.exempt_thumbprints else None)
    itc = healed.thumbprint if healed is not None else snapshot.internal_transport_thumbprint
    protected = {snapshot.internal_transport_thumbprint, itc} - {None}
    planning = _Planning(snapshot, verdicts, options, itc, protected, exemptions(snapshot, options, protected), _smtp_thumbprints(snapshot))
    enabled = _enable_for_every_name(planning)
    _restore_internal_transport(planning, healed, enabled)
    certificates = assess(snapshot, verdicts, options, protected)[0]
    _pin_connectors(planning)
    _drop_or_remove_untrusted(planning, {a.thumbprint: a for a in certificates})
    if not options.pin_connectors:
        # With pinning, the pin steps above already cover exempt certificates a connector could offer.
        planning.notes.extend("%s (exempt: %s) can be offered to Exchange Online by %s" % (a.thumbprint, a.exempt, ", ".join(a.exposed_by))
                              for a in certificates if a.exempt and a.exposed_by)
    planning.blockers += invariant_violations(snapshot, planning.steps, itc, planning.exempt)
    # A blocked plan changes nothing, the internal transport certificate included.
    return _plan(planning.steps, planning.blockers, planning.notes,
                 snapshot.internal_transport_thumbprint if planning.blockers else itc)


def _enable_for_every_name(planning: _Planning) -> list:
    """Phase 1, the interlock: every connector keeps (or gets) a trusted certificate enabled for SMTP for a
    name Exchange Online checks. Returns the certificates it enables."""
    snapshot, verdicts = planning.snapshot, planning.verdicts
    enabled = []
    for connector in planning.connectors:
        if any(_usable(verdicts, c, connector.exchange_online_names, planning.smtp) for c in snapshot.certificates):
            continue
        # An ECC certificate can be enabled only where Exchange's ECC support is known to be on.
        unsupported = {c.thumbprint for c in snapshot.certificates if is_ecc(c)} if snapshot.ecc_support is not True else set()
        chosen = best_certificate(snapshot, verdicts, connector.exchange_online_names, None,
                                  excluded=set(planning.exempt) | unsupported)[0]
        if chosen is None:
            ecc = best_certificate(snapshot, verdicts, connector.exchange_online_names, None, excluded=planning.exempt)[0]
            planning.blockers.append(ecc_unsupported(snapshot, connector, ecc) if ecc is not None
                                     else _nothing_trusted(snapshot, verdicts, connector, needs_smtp_hint=False))
            continue
        enabled.append(chosen)
        planning.smtp |= {chosen.thumbprint}
        planning.steps.append(Step(ENABLE_SMTP, chosen.thumbprint, "no trusted certificate enabled for SMTP covers %s"
                                   % " or ".join(connector.exchange_online_names), services=chosen.services | {SMTP}, force=True))
    return enabled


def _restore_internal_transport(planning: _Planning, healed: _model.Certificate | None, enabled: list) -> None:
    """Phase 2: put the internal transport certificate back after -Force took it, or heal it (healed)."""
    previous = _certificate(planning.snapshot, planning.itc)
    if previous is not None and (healed is not None or (enabled and planning.itc not in {c.thumbprint for c in enabled})):
        # (Without `previous` the invariant refuses the plan.)
        planning.steps.append(restore_step(previous, enabled[-1].thumbprint if enabled else planning.snapshot.internal_transport_thumbprint))


def _pin_connectors(planning: _Planning) -> None:
    """Phase 3: repair broken pins, and pin the connectors that could offer an untrusted certificate."""
    snapshot, verdicts = planning.snapshot, planning.verdicts
    untrusted_smtp = [c for c in snapshot.certificates if SMTP in c.services and not _trusted(verdicts, c)]
    for connector in planning.connectors:
        assessment = assess_connector(snapshot, verdicts, connector, planning.smtp)
        if assessment.state == PINNED:
            continue
        if assessment.state == BROKEN:
            why = assessment.problem
        else:
            exposing = [c.thumbprint for c in untrusted_smtp if c.thumbprint in connector.presents]
            if not exposing:
                continue
            why = "transport may offer %s (untrusted) for %s" % (", ".join(exposing), connector.selection_name)
        elsewhere = edge_sync_note(snapshot, connector, why)
        if elsewhere:
            planning.notes.append(elsewhere)
            continue
        if not planning.options.pin_connectors:
            planning.notes.append("%s: %s; pin it (pin_connectors, or hybridmail.exchange.send_connector_tls)" % (connector.label, why))
            continue
        chosen, note = best_certificate(snapshot, verdicts, connector.exchange_online_names, planning.smtp)
        if chosen is None:
            # Phase 1 found a usable certificate, but pinning its name would select a later-expiring
            # one with the same issuer and subject that cannot serve.
            planning.blockers.append(_nothing_trusted(snapshot, verdicts, connector, needs_smtp_hint=False))
            continue
        planning.notes.extend([note] if note else [])
        step = _pin_step(snapshot, connector, chosen, why)
        if step is not None:
            planning.steps.append(step)
            planning.pinned[connector.identity] = step.tls_certificate_name


def _drop_or_remove_untrusted(planning: _Planning, states: Mapping) -> None:
    """Phase 4: drop SMTP from untrusted certificates while they are exposed; remove them when asked and safe.

    A pin can also take a certificate out of the hybrid-facing set (the old TlsCertificateName named
    it); under scope all it is then judged like any other, so judge it as the next run will."""
    snapshot, options = planning.snapshot, planning.options
    after_pins = ({a.thumbprint: a.state for a in assess(with_pins(snapshot, planning.pinned), planning.verdicts, options, planning.protected)[0]}
                  if planning.pinned else {})
    for certificate in snapshot.certificates:
        assessment = states[certificate.thumbprint]
        if after_pins.get(certificate.thumbprint) == NONCOMPLIANT:
            assessment = dataclasses.replace(assessment, state=NONCOMPLIANT)
        if assessment.state not in (NONCOMPLIANT, MITIGATED) or SMTP not in certificate.services:
            continue
        if options.remove_untrusted:
            obstacles = _removal_obstacles(snapshot, certificate, planning.pinned)
            if not obstacles:
                planning.steps.append(Step(REMOVE_CERTIFICATE, certificate.thumbprint, "untrusted and safe to remove"))
                continue
            planning.notes.append("%s is not removed: %s" % (certificate.thumbprint, "; ".join(obstacles)))
        users = other_receive_connectors_using(snapshot, certificate)
        if assessment.state == NONCOMPLIANT and users and certificate.thumbprint in after_pins and after_pins[certificate.thumbprint] != NONCOMPLIANT:
            # The pins alone take it out of Exchange Online's reach; dropping SMTP would also take it from
            # connectors that serve clients or other servers, and break their TLS (issue 12 item 5).
            named = ", ".join("receive connector '%s'" % c for c in users)
            planning.notes.append("%s keeps SMTP: once the connectors are pinned no cloud connector can offer it, and %s need%s "
                                  "it for STARTTLS" % (certificate.thumbprint, named, "" if len(users) > 1 else "s"))
            continue
        if assessment.state == NONCOMPLIANT:
            planning.steps.append(Step(
                DROP_SMTP, certificate.thumbprint,
                "untrusted and enabled for SMTP%s" % (" (offered by %s)" % ", ".join(assessment.exposed_by) if assessment.exposed_by else ""),
                services=certificate.services - {SMTP}))


def plan_send_connector_tls(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping, receive_connectors: bool = False) -> Plan:
    """Pin every cloud send connector (and cloud receive connector when asked) to the best trusted
    certificate already enabled for SMTP."""
    connectors = [c for c in cloud_connectors(snapshot) if c.kind == SEND or receive_connectors]
    smtp = _smtp_thumbprints(snapshot)
    steps, blockers, notes = [], [], []
    if not connectors:
        notes.append("%s: no cloud %sconnector; nothing to pin" % (snapshot.host, "" if receive_connectors else "send "))
    for connector in connectors:
        chosen, note = best_certificate(snapshot, verdicts, connector.exchange_online_names, smtp)
        if chosen is None:
            blockers.append(_nothing_trusted(snapshot, verdicts, connector, needs_smtp_hint=True))
            continue
        notes.extend([note] if note else [])
        assessment = assess_connector(snapshot, verdicts, connector, smtp)
        why = assessment.problem or ("TlsCertificateName is empty" if assessment.state == UNPINNED else "a better certificate is available")
        elsewhere = edge_sync_note(snapshot, connector, why)
        if elsewhere:
            if _pin_step(snapshot, connector, chosen, why) is not None:
                notes.append(elsewhere)
            continue
        step = _pin_step(snapshot, connector, chosen, why)
        if step is not None:
            steps.append(step)
    blockers += invariant_violations(snapshot, steps, snapshot.internal_transport_thumbprint, exemptions(snapshot, SmtpOptions()))
    return _plan(steps, blockers, notes, snapshot.internal_transport_thumbprint)


# ---------------------------------------------------------------------------------------------
# Intended state
# ---------------------------------------------------------------------------------------------


def final_state(snapshot: _snapshot.ServerSnapshot, steps: Iterable[Step]) -> tuple[dict, str | None]:
    """(thumbprint -> services, internal transport thumbprint) once the steps ran, played as Exchange
    runs them under KB 2888788's "replace" reading, the worst case for SMTP (under the documented
    additive reading services only grow): an Enable step leaves exactly the services it passes, and
    with SMTP and -Force makes its certificate the internal transport certificate; a removal deletes it."""
    services = {c.thumbprint: frozenset(c.services) for c in snapshot.certificates}
    internal_transport = snapshot.internal_transport_thumbprint
    for step in _ordered(steps):
        if step.action == REMOVE_CERTIFICATE:
            services.pop(step.target, None)
        elif step.services is not None:
            services[step.target] = step.services
            if step.force and SMTP in step.services:
                internal_transport = step.target
    return services, internal_transport


def invariant_violations(snapshot: _snapshot.ServerSnapshot, steps, internal_transport: str | None, exempt: Mapping) -> list:
    """Why the steps must not run at all (empty: they may). internal_transport: the thumbprint the
    internal transport certificate must have afterwards; exempt: exemptions() of the plan.

    - the internal transport certificate must be known: a plan made without it cannot prove it keeps SMTP;
    - afterwards it must be that certificate, still on the server and enabled for SMTP;
    - no step but the restore of the internal transport certificate touches an exempt certificate
      (the Auth certificate, a listed one, the internal transport certificate)."""
    steps = tuple(steps)
    if not steps:
        return []
    host = snapshot.host
    if not internal_transport:
        failure = next((f.message for f in snapshot.failures if f.call_id == "transport"), None)
        why = ("Get-TransportService failed: %s" % failure if failure else
               "InternalTransportCertificateThumbprint is empty" if snapshot.transport is not None else "Get-TransportService returned nothing")
        return ["%s: the internal transport certificate is unknown (%s), so no change can be proved to keep it enabled for SMTP; "
                "nothing was changed. Run again once Get-TransportService answers." % (host, why)]
    problems = []
    services, final_internal_transport = final_state(snapshot, steps)
    current = _certificate(snapshot, internal_transport)
    if current is None:
        problems.append("%s: the internal transport certificate %s is not on the server, so it cannot be restored or kept enabled "
                        "for SMTP (HM311); fix internal transport first, nothing was changed" % (host, internal_transport))
    elif SMTP not in current.services:
        # Giving it SMTP back is the admin's decision: it may be a certificate that must not face
        # Exchange Online, and Exchange may have a reason the collection cannot see.
        problems.append("%s: the internal transport certificate %s is not enabled for SMTP, so internal mail flow is already broken "
                        "(HM313); restore it first (Enable-ExchangeCertificate -Thumbprint %s -Services SMTP -Force), nothing was "
                        "changed" % (host, internal_transport, internal_transport))
    elif internal_transport not in services:
        problems.append("%s: the plan would remove the internal transport certificate %s; it was refused whole, nothing was changed"
                        % (host, internal_transport))
    elif SMTP not in services[internal_transport]:
        problems.append("%s: the plan would leave the internal transport certificate %s without SMTP and break internal mail flow; "
                        "it was refused whole, nothing was changed" % (host, internal_transport))
    if current is not None and final_internal_transport != internal_transport:
        problems.append("%s: the plan would leave %s as the internal transport certificate instead of %s (enabling SMTP with -Force "
                        "replaces it); it was refused whole, nothing was changed" % (host, final_internal_transport, internal_transport))
    for step in steps:
        if step.target in exempt and not (step.action == RESTORE_INTERNAL_TRANSPORT and step.target == internal_transport):
            problems.append("%s: the plan would %s, which is exempt (%s); it was refused whole, nothing was changed"
                            % (host, step.describe(), exempt[step.target]))
    return problems


def intended_services(snapshot: _snapshot.ServerSnapshot, plan: Plan) -> dict:
    """thumbprint -> the services the plan means each certificate to end with (absent: removed)."""
    return final_state(snapshot, plan.steps)[0]


def intended_tls_names(plan: Plan) -> dict:
    """connector identity -> the TlsCertificateName the plan sets."""
    return {step.target: step.tls_certificate_name for step in plan.steps if step.action == PIN_CONNECTOR}

# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""exchange_certificate: import a PFX, bind it, pin it, verify it; remove or retire old certificates.

Pure Python, no Ansible imports. One read-only audit round trip (_snapshot.audit_calls, which also reads
the chain the server builds for every certificate), a plan, and - unless it is empty, blocked or check
mode - one mutating round trip: guards, the steps, then the audit reads again for verification.

The steps reuse the enforcement code (_plan.Step, _enforce.batch, _enforce.mutation_call):
- SMTP is enabled with -Force (_plan.ENABLE_SMTP), which makes the certificate the internal transport
  certificate; the previous one is restored right after (_plan.RESTORE_INTERNAL_TRANSPORT), as
  smtp_certificate does;
- pins are _plan.PIN_CONNECTOR steps, so that a pin of an organisation-wide send connector is guarded
  by a check that each of its other source servers holds the certificate with its private key;
- removals are _plan.REMOVE_CERTIFICATE steps.
Three calls are this module's own: Import-ExchangeCertificate (right after the guards), the IIS binding
(only when IIS is asked for, with -DoNotRequireSsl when asked; between enabling SMTP and restoring the
internal transport certificate, because its -Services names SMTP too), and Set-HybridConfiguration
-TlsCertificateName (last, after the pins it justifies).

The PFX and its password exist only inside the mutating request (typed values bytes and secure_string,
decoded on the server into byte[] and SecureString); nothing returned here holds them.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Mapping, Sequence

from . import _enforce, _facts, _model, _pfx, _plan, _snapshot, _trust
from ._catalogue import ECC_OVERRIDE_ADVICE

PRESENT = "present"
ABSENT = "absent"
RETIRED = "retired"
STATES = (PRESENT, ABSENT, RETIRED)
SERVICES = ("SMTP", "IIS", "IMAP", "POP")

IMPORT = "import_certificate"
ENABLE_IIS = "enable_iis"
PIN_HYBRID = "pin_hybrid_configuration"

IMPORT_ID = "import"
IIS_ID = "enable_iis"
HYBRID_ID = "hybrid_configuration"


@dataclasses.dataclass(frozen=True)
class Options:
    state: str = PRESENT
    services: frozenset = frozenset({"SMTP"})
    do_not_require_ssl: bool = False
    private_key_exportable: bool = False
    friendly_name: str | None = None
    pin_connectors: bool = False
    hybrid_configuration: bool = False
    names: tuple = ()  # the hybrid FQDNs the PFX is meant for; empty: the server's Exchange Online names
    thumbprint: str | None = None  # state absent


@dataclasses.dataclass(frozen=True)
class Extra:
    """One of the module's own mutations (not a _plan.Step)."""

    action: str
    call_id: str
    description: str
    call: dict = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Rollout:
    """What one run plans on one server."""

    plan: _plan.Plan  # the enforcement steps (enable, restore, pin, remove)
    imports: Extra | None
    iis: Extra | None
    hybrid: Extra | None
    blockers: tuple
    notes: tuple
    target: str | None  # the certificate this run is about (present: the PFX's)

    @property
    def blocked(self) -> bool:
        return bool(self.blockers)

    @property
    def empty(self) -> bool:
        return not (self.plan.steps or self.imports or self.iis or self.hybrid)

    def describe(self) -> list:
        """Every change in the order it runs."""
        lines = [self.imports.description] if self.imports else []
        steps = list(self.plan.steps)
        for step in steps:
            if step.action == _plan.RESTORE_INTERNAL_TRANSPORT and self.iis:
                lines.append(self.iis.description)
            lines.append(step.describe())
        if self.iis and not any(step.action == _plan.RESTORE_INTERNAL_TRANSPORT for step in steps):
            lines.append(self.iis.description)
        if self.hybrid:
            lines.append(self.hybrid.description)
        return lines


class PlanError(ValueError):
    """The plan is refused: nothing may change (the message names the host and the reason)."""


# ---------------------------------------------------------------------------------------------
# References: what keeps a certificate from being removed
# ---------------------------------------------------------------------------------------------


def references(snapshot: _snapshot.ServerSnapshot, certificate: _model.Certificate) -> list:
    """Every reason Remove-ExchangeCertificate would break something. A TlsCertificateName names a
    certificate by issuer and subject; Exchange refuses to remove a certificate a send connector names
    (CertificateTaggedWithSendConnector), even when a newer one with the same name is used instead."""
    found = []
    for connector in snapshot.send_connectors:
        if certificate in snapshot.certificates_named_by(connector.tls_certificate_name):
            found.append("send connector '%s' names it in TlsCertificateName" % (connector.identity or connector.name))
    for connector in snapshot.receive_connectors:
        if certificate in snapshot.certificates_named_by(connector.tls_certificate_name):
            found.append("receive connector '%s' names it in TlsCertificateName" % (connector.identity or connector.name))
    if snapshot.hybrid is not None and certificate in snapshot.certificates_named_by(snapshot.hybrid.tls_certificate_name):
        found.append("Get-HybridConfiguration's TlsCertificateName names it")
    if certificate.thumbprint == snapshot.internal_transport_thumbprint:
        found.append("it is the internal transport certificate (InternalTransportCertificateThumbprint)")
    if certificate.is_auth_certificate:
        found.append("it is the Exchange Server Auth certificate")
    if "IIS" in certificate.services:
        found.append("it is bound to IIS (the web certificate)")
    return found


def superseded(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping) -> list:
    """(certificate, the newer one) for every certificate that a newer, trusted certificate with the same
    issuer and subject supersedes on this server."""
    pairs = []
    for certificate in snapshot.certificates:
        if certificate.x509 is None or certificate.is_auth_certificate:
            continue
        same = snapshot.certificates_named_by(_model.tls_certificate_name_of(certificate))
        newer = [c for c in same if c is not certificate and c.x509 is not None
                 and c.x509.not_after > certificate.x509.not_after
                 and verdicts.get(c.thumbprint) is not None and verdicts[c.thumbprint].trusted]
        if newer:
            pairs.append((certificate, newer[0]))
    return pairs


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def certificate_on(snapshot: _snapshot.ServerSnapshot, thumbprint: str | None) -> _model.Certificate | None:
    return next((c for c in snapshot.certificates if c.thumbprint == thumbprint), None)


def final_services(snapshot: _snapshot.ServerSnapshot, thumbprint: str, services) -> frozenset:
    """The services the certificate ends with: what it has, plus what was asked for."""
    installed = certificate_on(snapshot, thumbprint)
    return (frozenset(installed.services) if installed is not None else frozenset()) | frozenset(services)


def _named(name: str | None, certificate: _model.Certificate) -> bool:
    parsed = _model.parse_tls_certificate_name(name)
    return parsed is not None and _model.tls_name_selects(parsed, certificate)


def plan_present(snapshot: _snapshot.ServerSnapshot, pfx: _pfx.Pfx, options: Options, pfx_value: dict,
                 password_value: dict | None, verdicts: Mapping | None = None, chain_problem: str | None = None) -> Rollout:
    """Import (unless the thumbprint is there), services, internal transport, pins, hybrid configuration.
    pfx_value / password_value: the typed request values (bytes / secure_string) for Import-ExchangeCertificate.
    chain_problem: chain_finding()'s problem for the certificate as the server holds it (None when it is
    complete or not there yet): a certificate whose chain the server cannot complete is never pinned."""
    host = snapshot.host
    thumbprint = pfx.thumbprint
    installed = certificate_on(snapshot, thumbprint)
    certificate = installed or pfx.certificate
    blockers, notes = [], []
    names = options.names or snapshot.exposure.exchange_online_names
    if names and not any(_model.name_matches(name, certificate) for name in names):
        blockers.append("%s: certificate %s covers %s, none of the names Exchange Online checks here (%s); nothing was "
                        "changed." % (host, thumbprint, ", ".join(pfx.facts()["names"]) or "no name", ", ".join(names)))
    if installed is not None and installed.has_private_key is False:
        blockers.append("%s: certificate %s is on the server without its private key; remove it and import the PFX "
                        "with its key, nothing was changed." % (host, thumbprint))

    imports = None
    if installed is None:
        parameters = dict(FileData=pfx_value, Server=_snapshot.COMPUTERNAME, Confirm=False)
        if password_value is not None:
            parameters["Password"] = password_value
        if options.private_key_exportable:
            parameters["PrivateKeyExportable"] = True
        if options.friendly_name:
            parameters["FriendlyName"] = options.friendly_name
        imports = Extra(IMPORT, IMPORT_ID, "import certificate %s (%s, issued by %s) with Import-ExchangeCertificate"
                        % (thumbprint, pfx.subject, pfx.issuer),
                        _snapshot.call(IMPORT_ID, "Import-ExchangeCertificate", **parameters))

    current = frozenset(installed.services) if installed is not None else frozenset()
    wanted = frozenset(options.services)
    final = current | wanted
    steps = []
    forced = False
    missing_non_iis = (wanted - current) - {"IIS"}
    if missing_non_iis:
        force = "SMTP" in final
        forced |= force
        steps.append(_plan.Step(_plan.ENABLE_SMTP, thumbprint, "services asked for: %s" % _plan.format_services(sorted(wanted)),
                                services=final - {"IIS"}, force=force))
    iis = None
    if "IIS" in wanted and "IIS" not in current:
        parameters = dict(Thumbprint=thumbprint, Services=_plan.format_services(final), Server=_snapshot.COMPUTERNAME,
                          Confirm=False)
        if "SMTP" in final:
            parameters["Force"] = True
            forced = True
        if options.do_not_require_ssl:
            parameters["DoNotRequireSsl"] = True
        iis = Extra(ENABLE_IIS, IIS_ID, "enable IIS on %s (services: %s%s)" % (
            thumbprint, _plan.format_services(final), ", -DoNotRequireSsl" if options.do_not_require_ssl else ""),
            _snapshot.call(IIS_ID, "Enable-ExchangeCertificate", **parameters))
    if (steps or iis) and _plan.is_ecc(certificate) and snapshot.ecc_support is not True:
        # Enable-ExchangeCertificate fails with KeyAlgorithmUnsupported there, after the import.
        blockers.append("%s: certificate %s has an ECC key, and %s, so Enable-ExchangeCertificate would fail with "
                        "KeyAlgorithmUnsupported. %s Nothing was changed."
                        % (host, thumbprint, _plan.ecc_support_problem(snapshot), ECC_OVERRIDE_ADVICE))
    itc = snapshot.internal_transport_thumbprint
    if forced and itc != thumbprint:
        previous = certificate_on(snapshot, itc)
        if previous is not None:  # without it, _checked() refuses the plan
            steps.append(_plan.restore_step(previous, thumbprint))

    name = pfx.tls_certificate_name
    if options.pin_connectors:
        if chain_problem and installed is not None:
            blockers.append("%s: not pinning %s: %s; nothing was changed." % (host, thumbprint, chain_problem))
        if "SMTP" not in final:
            blockers.append("%s: pin_connectors needs SMTP in services (a pinned certificate not enabled for SMTP fails "
                            "with UnknownCredentials); nothing was changed." % host)
        for connector in _plan.cloud_connectors(snapshot):
            elsewhere = _plan.edge_sync_note(snapshot, connector, "%s is the certificate being rolled out" % thumbprint)
            if elsewhere:
                if not _named(connector.tls_certificate_name, certificate):
                    notes.append(elsewhere)
                continue
            if not any(_model.name_matches(n, certificate) for n in connector.exchange_online_names):
                blockers.append("%s: %s presents its certificate for %s, which %s does not cover; nothing was changed."
                                % (host, connector.label, " or ".join(connector.exchange_online_names), thumbprint))
                continue
            if _named(connector.tls_certificate_name, certificate):
                later = [c for c in snapshot.certificates_named_by(connector.tls_certificate_name)
                         if c.thumbprint != thumbprint and c.x509 is not None and c.x509.not_after > certificate.x509.not_after]
                if later:
                    notes.append("%s: %s names %s, but Exchange uses %s, which has the same issuer and subject and "
                                 "expires later" % (host, connector.label, thumbprint, later[0].thumbprint))
                continue
            steps.append(_plan.Step(_plan.PIN_CONNECTOR, connector.identity, "%s is the certificate being rolled out"
                                    % thumbprint, connector_kind=connector.kind, tls_certificate_name=name,
                                    certificate=thumbprint, shared_with=connector.shared_with))
        # Untrusted certificates for the names now pinned lose SMTP (as smtp_certificate drops it: the
        # certificate's other services, never IIS, never the internal transport or Auth certificate).
        pinned_names = {n for c in _plan.cloud_connectors(snapshot) for n in (c.selection_name,) + c.exchange_online_names}
        exempt = _plan.exemptions(snapshot, _plan.SmtpOptions())
        for other in snapshot.certificates:
            verdict = (verdicts or {}).get(other.thumbprint)
            if (other.thumbprint == thumbprint or other.thumbprint in exempt or "SMTP" not in other.services
                    or verdict is None or verdict.trusted
                    or not any(_model.exchange_domain_matches(n, other) for n in pinned_names)):
                continue
            steps.append(_plan.Step(_plan.DROP_SMTP, other.thumbprint, "untrusted and enabled for SMTP for %s"
                                    % ", ".join(sorted(n for n in pinned_names if _model.exchange_domain_matches(n, other))),
                                    services=other.services - {"SMTP"}))
    hybrid = None
    if options.hybrid_configuration:
        if snapshot.hybrid is None:
            notes.append("%s: no hybrid configuration to pin (an Edge server cannot read it; run the task on a Mailbox "
                         "server)" % host)
        elif not _named(snapshot.hybrid.tls_certificate_name, certificate):
            hybrid = Extra(PIN_HYBRID, HYBRID_ID, "set Get-HybridConfiguration's TlsCertificateName to %s (organisation-wide)"
                           % name, _snapshot.call(HYBRID_ID, "Set-HybridConfiguration", TlsCertificateName=name, Confirm=False))
    # The IIS enable runs before the restore (rollout_batch) and, with SMTP, with -Force: as an Enable step.
    enables_iis = [_plan.Step(_plan.ENABLE_SMTP, thumbprint, "IIS", services=final, force="SMTP" in final)] if iis else []
    blockers += _checked(snapshot, steps + enables_iis, itc)
    if blockers:
        return Rollout(_plan.Plan((), tuple(blockers), tuple(notes), itc), None, None, None, tuple(blockers), tuple(notes), thumbprint)
    plan = _plan.Plan(tuple(sorted(steps, key=lambda s: (_plan.STEP_ORDER.index(s.action), bool(s.shared_with)))), (),
                      tuple(notes), itc)
    return Rollout(plan, imports, iis, hybrid, (), tuple(notes), thumbprint)


def _checked(snapshot: _snapshot.ServerSnapshot, steps, itc: str | None) -> list:
    """The planner's invariants (_plan.invariant_violations) for a rollout's steps: the internal transport
    certificate known, still itc afterwards and enabled for SMTP, the Auth and listed certificates
    untouched. The certificate being rolled out may be the internal transport certificate itself: what
    counts for it is that it keeps SMTP, which the final state shows."""
    exempt = {t: why for t, why in _plan.exemptions(snapshot, _plan.SmtpOptions()).items() if why != _plan.INTERNAL_TRANSPORT}
    return _plan.invariant_violations(snapshot, steps, itc, exempt)


def plan_absent(snapshot: _snapshot.ServerSnapshot, thumbprint: str) -> Rollout:
    itc = snapshot.internal_transport_thumbprint
    certificate = certificate_on(snapshot, thumbprint)
    if certificate is None:
        return Rollout(_plan.Plan((), (), (), itc), None, None, None, (), (), thumbprint)
    found = references(snapshot, certificate)
    if found:
        blocker = "%s: certificate %s is not removed: %s. Nothing was changed." % (snapshot.host, thumbprint, "; ".join(found))
        return Rollout(_plan.Plan((), (blocker,), (), itc), None, None, None, (blocker,), (), thumbprint)
    step = _plan.Step(_plan.REMOVE_CERTIFICATE, thumbprint, "state absent")
    blockers = tuple(_checked(snapshot, [step], itc))
    if blockers:
        return Rollout(_plan.Plan((), blockers, (), itc), None, None, None, blockers, (), thumbprint)
    return Rollout(_plan.Plan((step,), (), (), itc), None, None, None, (), (), thumbprint)


def plan_retired(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping) -> Rollout:
    itc = snapshot.internal_transport_thumbprint
    steps, notes = [], []
    for certificate, newer in superseded(snapshot, verdicts):
        found = references(snapshot, certificate)
        if found:
            notes.append("%s: %s is superseded by %s but kept: %s"
                         % (snapshot.host, certificate.thumbprint, newer.thumbprint, "; ".join(found)))
            continue
        steps.append(_plan.Step(_plan.REMOVE_CERTIFICATE, certificate.thumbprint, "superseded by %s (same issuer and subject, "
                                "expires later)" % newer.thumbprint))
    blockers = tuple(_checked(snapshot, steps, itc))
    if blockers:
        return Rollout(_plan.Plan((), blockers, tuple(notes), itc), None, None, None, blockers, tuple(notes), None)
    return Rollout(_plan.Plan(tuple(steps), (), tuple(notes), itc), None, None, None, (), tuple(notes), None)


# ---------------------------------------------------------------------------------------------
# The mutating round trip
# ---------------------------------------------------------------------------------------------


def _first_step_position(calls: list) -> int:
    """Where the head guards end: the first call that is a step, or a guard that belongs to one."""
    for position, (call, _meaning) in enumerate(calls):
        call_id = call["id"]
        if call_id.startswith(_enforce.STEP_PREFIX) or call_id.startswith(_enforce.GUARD_PREFIX + "step"):
            return position
    return len(calls)


def mutating_calls(host: str, rollout: Rollout, audit_response: Mapping) -> list:
    """(call, meaning of a failed guard or None), in order: guards, import, steps (IIS before the
    restore of the internal transport certificate), the hybrid configuration last."""
    plan = rollout.plan
    if plan.steps:
        calls = _enforce.batch(host, plan, audit_response)
    else:
        # Only the module's own calls: still guard the certificates the plan was made from.
        plan_for_guard = _plan.Plan((_plan.Step(_plan.REMOVE_CERTIFICATE, "-", "guard only"),), (), (), plan.internal_transport_thumbprint)
        calls = [entry for entry in _enforce.batch(host, plan_for_guard, audit_response)
                 if entry[0]["id"].startswith(_enforce.GUARD_PREFIX)]
    head = _first_step_position(calls)
    if rollout.imports:
        calls.insert(head, (rollout.imports.call, None))
    if rollout.iis:
        restore = next((n for n, (call, _m) in enumerate(calls) if call["id"].startswith(_enforce.STEP_PREFIX)
                        and plan.steps[int(call["id"][len(_enforce.STEP_PREFIX):]) - 1].action == _plan.RESTORE_INTERNAL_TRANSPORT), None)
        if restore is None:
            enable = next((n for n, (call, _m) in enumerate(calls) if call["id"] == _enforce.step_id(1)
                           and plan.steps[0].action == _plan.ENABLE_SMTP), None)
            restore = enable + 1 if enable is not None else _first_step_position(calls)
        calls.insert(restore, (rollout.iis.call, None))
    if rollout.hybrid:
        calls.append((rollout.hybrid.call, None))
    return calls


def request_calls(host: str, rollout: Rollout, audit_response: Mapping, reads: Sequence) -> list:
    return [call for call, _meaning in mutating_calls(host, rollout, audit_response)] + list(reads)


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------


def outcomes(rollout: Rollout, response: Mapping | None) -> list:
    """[{action, description, status, error}] for every change, in the order it ran."""
    entries = {entry.get("id"): entry for entry in (response or {}).get("calls") or ()}

    def status_of(call_id):
        if response is None:
            return {"status": _enforce.PLANNED, "error": None}
        entry = entries.get(call_id) or {}
        if entry.get("ok"):
            return {"status": _enforce.APPLIED, "error": None}
        if entry.get("skipped") or not entry:
            return {"status": _enforce.SKIPPED, "error": None}
        return {"status": _enforce.FAILED, "error": entry.get("error") or {}}

    result = []
    if rollout.imports:
        result.append(dict(action=IMPORT, description=rollout.imports.description, **status_of(IMPORT_ID)))
    restore_seen = False
    for number, step in enumerate(rollout.plan.steps, start=1):
        if step.action == _plan.RESTORE_INTERNAL_TRANSPORT and rollout.iis:
            result.append(dict(action=ENABLE_IIS, description=rollout.iis.description, **status_of(IIS_ID)))
            restore_seen = True
        result.append(dict(action=step.action, description=step.describe(), target=step.target,
                           **status_of(_enforce.step_id(number))))
    if rollout.iis and not restore_seen:
        result.append(dict(action=ENABLE_IIS, description=rollout.iis.description, **status_of(IIS_ID)))
    if rollout.hybrid:
        result.append(dict(action=PIN_HYBRID, description=rollout.hybrid.description, **status_of(HYBRID_ID)))
    return result


def bindings(snapshot: _snapshot.ServerSnapshot, thumbprints: Sequence[str]) -> dict:
    """What this module changes, in a form whose equality means "nothing changed"."""
    certificates = {}
    for thumbprint in thumbprints:
        certificate = certificate_on(snapshot, thumbprint)
        certificates[thumbprint] = _plan.format_services(certificate.services) if certificate else "absent"
    return {
        "certificates": certificates,
        "internal_transport_certificate": snapshot.internal_transport_thumbprint,
        "connectors": {"%s: %s" % (c.kind, c.identity): c.tls_certificate_name for c in _plan.cloud_connectors(snapshot)},
        "hybrid_tls_certificate_name": snapshot.hybrid.tls_certificate_name if snapshot.hybrid else None,
    }


def intended(snapshot: _snapshot.ServerSnapshot, rollout: Rollout, thumbprints: Sequence[str], final_services) -> dict:
    after = bindings(snapshot, thumbprints)
    after = {key: (dict(value) if isinstance(value, dict) else value) for key, value in after.items()}
    for step in rollout.plan.steps:
        if step.action == _plan.REMOVE_CERTIFICATE:
            after["certificates"][step.target] = "absent"
        elif step.action == _plan.PIN_CONNECTOR:
            after["connectors"]["%s: %s" % (step.connector_kind, step.target)] = step.tls_certificate_name
    if rollout.target and final_services is not None and (rollout.imports or any(
            s.action == _plan.ENABLE_SMTP for s in rollout.plan.steps) or rollout.iis):
        after["certificates"][rollout.target] = _plan.format_services(final_services)
    if rollout.hybrid:
        after["hybrid_tls_certificate_name"] = rollout.hybrid.call["parameters"]["TlsCertificateName"]
    return after


def chain_finding(snapshot: _snapshot.ServerSnapshot, thumbprint: str, store: _trust.TrustStore, now: datetime.datetime,
                  names: Sequence[str], min_key_bits: int) -> dict:
    """The chain the server builds for the certificate (Get-HybridmailCertificateChain), and whether
    Exchange Online can complete it from what the server sends (it does not fetch intermediates)."""
    certificate = certificate_on(snapshot, thumbprint)
    chain = next((c for c in snapshot.chains if c.thumbprint == thumbprint), None)
    if certificate is None:
        return {"complete": None, "thumbprints": [], "status": [], "problem": "the certificate is not on the server"}
    held = _trust.server_pool(snapshot.certificates, snapshot.chains)
    verdict = _trust.evaluate(certificate, intermediates=held, store=store, names=names or _facts.judged_names(snapshot, certificate),
                              now=now, min_key_bits=min_key_bits, known_intermediates=store.intermediates)
    problem = None
    if _trust.INCOMPLETE_CHAIN in verdict.codes or (chain is not None and "PartialChain" in chain.chain_status):
        problem = ("the chain the server builds for %s is incomplete (%s): Exchange Online does not fetch intermediates, "
                   "so it will refuse the certificate. Import the issuing CA certificate into the server's Intermediate "
                   "Certification Authorities store (or a PFX that carries it)"
                   % (thumbprint, ", ".join(sorted(chain.chain_status)) if chain and chain.chain_status else "incomplete_chain"))
    elif chain is None:
        problem = "Get-HybridmailCertificateChain returned no chain for %s: not verified" % thumbprint
    elif not verdict.trusted:
        problem = "%s as the server holds it is not trusted: %s" % (thumbprint, ", ".join(verdict.codes))
    return {"complete": problem is None, "thumbprints": list(chain.chain_thumbprints) if chain else [],
            "status": sorted(chain.chain_status) if chain else [], "problem": problem}

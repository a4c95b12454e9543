# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""From a plan to one mutating round trip, and from its answer to a verified result.

Pure Python, no Ansible imports; the action plugins only move requests and responses.

A module run is one read-only audit round trip, then - only when the plan has steps, the interlock
did not block it and this is not check mode - one mutating round trip (docs/wire-contract.md):

1. guards: Get-* calls whose `expect` rows are the audit's own objects, over the properties the plan
   depends on, so the runner aborts before any mutation when the server changed since the audit;
2. the steps, in plan order; the runner stops at the first failed one and skips the rest;
3. the audit reads again, which run even after an abort: the result reports the state as re-read,
   and the planner run on it tells whether the desired state was reached.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Callable, Mapping

from . import _autofix, _facts, _model, _plan, _snapshot, _trust

GUARD_PREFIX = "guard_"
STEP_PREFIX = "step"

APPLIED = "applied"
FAILED = "failed"
SKIPPED = "skipped"
PLANNED = "planned"


# Enable-/Remove-ExchangeCertificate fail in some snap-in sessions with "Unknown error (0xe0434f4d)" while
# the Exchange Management Shell, a remote session to the server's /PowerShell endpoint, runs them (win-acme
# issues 1027, 1372, 1789). Steps before them would already have applied, so a mutating round trip with
# either runs in a remote_exchange session: chosen for `auto`, and an explicit snap-in session is refused
# before anything is sent. Edge Transport has no remote Exchange PowerShell: the snap-in is all there is.
CERTIFICATE_TASKS = ("Enable-ExchangeCertificate", "Remove-ExchangeCertificate")
SNAPIN_CERTIFICATE_ERROR = "0xe0434f4d"
SNAPIN_CERTIFICATE_ADVICE = ("Enable-/Remove-ExchangeCertificate can fail in a snap-in session with 'Unknown error (0xe0434f4d)' "
                             "while the Exchange Management Shell runs them (win-acme issues 1027, 1372, 1789): use "
                             "exchange_session auto or remote_exchange, which run the changes in a remote session")


def mutation_session(host: str, session_load: str, cmdlets, is_edge: bool) -> tuple:
    """(session.load of a mutating round trip with these cmdlets, refusal message or None)."""
    if is_edge or not any(cmdlet in CERTIFICATE_TASKS for cmdlet in cmdlets):
        return session_load, None
    if session_load == "auto":
        return "remote_exchange", None
    if session_load == "snapin":
        return session_load, "%s: exchange_session %s: %s. Nothing was changed." % (host, session_load, SNAPIN_CERTIFICATE_ADVICE)
    return session_load, None


# Verification reads right after a change may be answered by a domain controller that has not replicated it
# yet: Microsoft's New-ExchangeAuthCertificate.ps1 (CSS-Exchange, Admin/MonitorExchangeAuthCertificate) waits
# 10 s after Enable-ExchangeCertificate before it reads the internal transport certificate back from AD. When
# (and only when) the re-read of the mutating round trip disagrees with the plan although every step applied,
# the reads are repeated in at most len(VERIFY_RETRY_WAITS) more read-only round trips, after these waits (10 s
# in all), before a mismatch is reported: the one exception to "at most two round trips per remediation".
VERIFY_RETRY_WAITS = (3.0, 7.0)


def lagging_read_note(again: int, verified: bool) -> str:
    """The note of a verification read again `again` times (VERIFY_RETRY_WAITS)."""
    outcome = "verified" if verified else "still not the desired state"
    return ("the re-read right after the changes did not show them (a domain controller that had not replicated them yet?); "
            "read again %d time(s) within %d s: %s" % (again, sum(VERIFY_RETRY_WAITS[:again]), outcome))


@dataclass(frozen=True)
class Planned:
    """The audit and what was planned from it."""

    snapshot: _snapshot.ServerSnapshot
    verdicts: Mapping
    plan: _plan.Plan
    audit_response: Mapping


@dataclass(frozen=True)
class Enforcer:
    """One module run on one host. planner(snapshot, verdicts) -> Plan is the module's desired state;
    options only shape the per-certificate states the result reports."""

    host: str
    planner: Callable
    store: _trust.TrustStore
    now: datetime.datetime
    min_key_bits: int
    session_load: str
    options: _plan.SmtpOptions = _plan.SmtpOptions()
    # Event 2004 is only reported (the facts match certificate_info's); no decision depends on it.
    event_lookback_days: int = 0

    # -- the two round trips ----------------------------------------------------------------------

    def reads(self) -> list:
        """The audit reads: the whole audit round trip, and the verification reads of the mutating one."""
        return _snapshot.audit_calls(event_lookback_days=self.event_lookback_days)

    def audit_request(self) -> dict:
        return _snapshot.request(self.reads(), read_only=True, session_load=self.session_load)

    def plan(self, audit_response: Mapping) -> Planned:
        """Raises _snapshot.SnapshotError when a read the plan needs failed."""
        snapshot = self._snapshot(audit_response)
        verdicts = self._judge(snapshot)
        return Planned(snapshot, verdicts, self.planner(snapshot, verdicts), audit_response)

    def _mutation_session(self, planned: Planned) -> tuple:
        cmdlets = [call["cmdlet"] for call, _meaning in batch(self.host, planned.plan, planned.audit_response)]
        return mutation_session(self.host, self.session_load, cmdlets, planned.snapshot.server.is_edge)

    def session_refusal(self, planned: Planned) -> str | None:
        """Why the plan's mutating round trip must not be sent in the session asked for, or None."""
        return self._mutation_session(planned)[1]

    def enforcement_request(self, planned: Planned) -> dict:
        calls = [call for call, meaning in batch(self.host, planned.plan, planned.audit_response)]
        calls += self.reads()
        return _snapshot.request(calls, read_only=False, session_load=self._mutation_session(planned)[0])

    def verification_request(self) -> dict:
        """The verification reads again, alone (read-only): what a retry of the verification sends."""
        return self.audit_request()

    def verification_may_lag(self, planned: Planned, response: Mapping, failure: str | None) -> bool:
        """Whether a failed verification may only be a read that lags the change (VERIFY_RETRY_WAITS): every step
        applied, no guard failed, and every read of the configuration answered, but not what the plan leads to.
        A read that failed is reported as it is: it is not a disagreement."""
        if not failure or not planned.plan.steps or failed_guard(response):
            return False
        if any(outcome["status"] != APPLIED for outcome in step_outcomes(planned.plan, response)):
            return False
        try:
            after = self._snapshot(response)
        except _snapshot.SnapshotError:
            return False
        return after.transport is not None and not any(f.call_id in ("transport", "hybrid") for f in after.failures)

    def _judge(self, snapshot: _snapshot.ServerSnapshot) -> dict:
        """The snapshot's one trust evaluation, as certificate_info makes it."""
        return _facts.evaluate(snapshot, self.store, self.now, self.min_key_bits)

    def _state(self, snapshot: _snapshot.ServerSnapshot, verdicts: Mapping, plan: _plan.Plan) -> dict:
        """The result's account of the server: states per certificate and connector, and under
        `facts` what certificate_info would return for it (the same verdicts), for reports, with what
        plan (this module's, for snapshot) would clear (_autofix)."""
        facts = _autofix.annotate(_facts.server_facts(snapshot, verdicts, self.now), snapshot, verdicts, self.now, plan)
        return dict(_state_facts(snapshot, verdicts, self.options), facts=facts)

    def _snapshot(self, response: Mapping) -> _snapshot.ServerSnapshot:
        return _snapshot.ServerSnapshot.from_response(response, self.host, self.reads())

    # -- the result -------------------------------------------------------------------------------

    def report(self, planned: Planned, response: Mapping | None = None, sent_at: datetime.datetime | None = None) -> tuple:
        """(result fields, failure message or None). response: the mutating round trip's answer, None
        when there was none (blocked, check mode, nothing to do); sent_at: when it was sent."""
        before = planned.snapshot
        plan = planned.plan
        notes = list(plan.notes)
        result = {"plan": [_step_facts(step) for step in plan.steps]}
        if plan.blocked:
            result.update(self._state(before, planned.verdicts, plan), changed=False, notes=notes, diff=_diff(before, before))
            return result, " ".join(plan.blockers)
        if response is None:
            # check mode, or nothing to do
            result.update(self._state(before, planned.verdicts, plan),
                          steps=[dict(_step_facts(step), status=PLANNED) for step in plan.steps],
                          changed=bool(plan.steps), notes=notes, diff=_intended_diff(before, plan))
            return result, None

        outcomes = step_outcomes(plan, response)
        result["steps"] = [dict(_step_facts(step), **outcome) for step, outcome in zip(plan.steps, outcomes)]
        failures = []
        guard = failed_guard(response)
        if guard:
            failures.append(dict((call["id"], meaning) for call, meaning in batch(self.host, plan, planned.audit_response))[guard])
            if is_shared_source_guard(guard):
                # Another source server of a shared send connector lacks the certificate: what this server needs
                # (the PFX imported there) is nothing enforcement can do, like the interlock's refusals.
                result["blocked"] = [failures[0]]
        failed = next((n for n, outcome in enumerate(outcomes) if outcome["status"] == FAILED), None)
        if failed is not None:
            failures.append(_step_failure(self.host, plan, outcomes, failed))

        try:
            after = self._snapshot(response)
        except _snapshot.SnapshotError as exc:
            failures.append("%s: the re-read after the changes failed, so they are not verified: %s" % (self.host, exc))
            result.update(changed=any(o["status"] == APPLIED for o in outcomes), notes=notes)
            return result, " ".join(failures)
        verdicts = self._judge(after)
        diff = _diff(before, after)
        # Only what this run applied counts as a change; a guard mismatch shows someone else's.
        applied = any(outcome["status"] == APPLIED for outcome in outcomes)
        remaining = self.planner(after, verdicts)
        result.update(self._state(after, verdicts, remaining), changed=applied and diff["before"] != diff["after"],
                      notes=notes, diff=diff)
        if applied:
            # Lets reports tell a queue error of the last retry before the change from a current one.
            # When the mutating round trip was sent, not when this run started: another server's change to
            # a shared send connector in between may already have made this server's queue retry and fail.
            result["facts"]["changed_at"] = _model.iso_utc(sent_at or self.now)
        failures += internal_transport_failures(self.host, plan, after)
        if not failures:
            if remaining.steps or remaining.blocked:
                failures.append(_not_converged(self.host, plan, remaining, after))
        return result, " ".join(failures) or None


# ---------------------------------------------------------------------------------------------
# Request
# ---------------------------------------------------------------------------------------------


def step_id(number: int) -> str:
    return "%s%d" % (STEP_PREFIX, number)


def _expect(audit_response: Mapping, call_id: str, properties, keep=lambda obj: True) -> list:
    """Guard rows: the audit's own objects (as the runner converted them) over properties."""
    for entry in audit_response.get("calls") or ():
        if entry.get("id") == call_id:
            return [{name: obj.get(name) for name in properties} for obj in entry.get("objects") or () if keep(obj)]
    raise ValueError("the audit has no %s call to guard" % call_id)


def batch(host: str, plan: _plan.Plan, audit_response: Mapping) -> list:
    """The guards and mutations of the mutating round trip, in order: (call, what it means when the
    call is a guard that fails, else None).

    Guards first, on the reads whose values the plan was computed from, each with the audit's rows
    as `expect`:
    - every plan depends on which certificates the server holds and their services (interlock,
      choice of certificate, exposure): Thumbprint and Services of all of them;
    - every plan depends on the internal transport certificate, which it must leave enabled for SMTP
      (the invariant of _plan.invariant_violations): a plan made for another one must not run;
    - pinning a receive connector (per server) depends on its current TlsCertificateName;
    - send connectors are organisation-wide, and every hybrid server of a fleet run may pin the same
      one at the same time with the same value: their guard only checks that the connector still
      exists, so that a sibling having done it first does not abort this server.
    Then the steps. Pinning a send connector changes it for its other source servers too, so right
    before that step each of them must hold the very certificate pinned, with its private key; when
    one does not, the runner stops there and the steps before it (which only concern this server)
    stay applied.
    """
    if not plan.steps:
        return []
    changed = "%s: the server changed since the plan (%%s no longer matches the audit); nothing was applied. " \
              "Run again to plan from the current state." % host
    calls = [(_snapshot.call(GUARD_PREFIX + "certificates", "Get-ExchangeCertificate",
                             expect=_expect(audit_response, "certificates", _snapshot.CERTIFICATE_GUARD_PROPERTIES),
                             Server=_snapshot.COMPUTERNAME), changed % "Get-ExchangeCertificate")]
    calls.append((_snapshot.call(GUARD_PREFIX + "transport", "Get-TransportService",
                                 expect=_expect(audit_response, "transport", _snapshot.TRANSPORT_GUARD_PROPERTIES),
                                 Identity=_snapshot.COMPUTERNAME), changed % "Get-TransportService"))
    for number, step in enumerate(plan.steps, start=1):
        if step.action != _plan.PIN_CONNECTOR:
            continue
        if step.connector_kind == _plan.SEND:
            cmdlet, call_id, properties = "Get-SendConnector", "send_connectors", ("Identity",)
        else:
            cmdlet, call_id, properties = "Get-ReceiveConnector", "receive_connectors", _snapshot.CONNECTOR_GUARD_PROPERTIES
        expect = _expect(audit_response, call_id, properties, keep=lambda obj, identity=step.target: obj.get("Identity") == identity)
        calls.append((_snapshot.call("%sconnector%d" % (GUARD_PREFIX, number), cmdlet, expect=expect, Identity=step.target),
                      changed % ("%s '%s'" % (cmdlet, step.target))))
    for number, step in enumerate(plan.steps, start=1):
        for other, server in enumerate(step.shared_with, start=1):
            calls.append((
                _snapshot.call(shared_source_guard_id(number, other), "Get-ExchangeCertificate",
                               expect=[{"Thumbprint": step.certificate, "HasPrivateKey": True}],
                               Server=server, Thumbprint=step.certificate),
                "%s: %s also sends through send connector '%s' but does not hold certificate %s with its private key: "
                "pinned to it, the organisation-wide connector would make %s's mail to Exchange Online fail (454 4.7.5, "
                "certificate not found), so step %d and the ones after it were not run. Import the same certificate "
                "(PFX) on every source server of the connector, then run again."
                % (host, server, step.target, step.certificate, server, number)))
        calls.append((mutation_call(step, step_id(number)), None))
    return calls


def mutation_call(step: _plan.Step, call_id: str) -> dict:
    if step.action == _plan.PIN_CONNECTOR:
        cmdlet = "Set-SendConnector" if step.connector_kind == _plan.SEND else "Set-ReceiveConnector"
        return _snapshot.call(call_id, cmdlet, Identity=step.target, TlsCertificateName=step.tls_certificate_name, Confirm=False)
    if step.action == _plan.REMOVE_CERTIFICATE:
        return _snapshot.call(call_id, "Remove-ExchangeCertificate", Thumbprint=step.target, Server=_snapshot.COMPUTERNAME,
                              Confirm=False)
    # IIS is never passed, even for a certificate that shows it: IIS in -Services binds the Default
    # Web Site to the certificate (and turns on "require SSL"), and a certificate may show IIS only
    # because the Exchange Back End site uses it (the self-signed one does). Leaving IIS out does not
    # unbind anything: the IIS binding is the site's, not a flag Enable-ExchangeCertificate clears.
    parameters = dict(Thumbprint=step.target, Services=_plan.format_services(step.services - {"IIS"}),
                      Server=_snapshot.COMPUTERNAME, Confirm=False)
    if step.force:
        parameters["Force"] = True
    return _snapshot.call(call_id, "Enable-ExchangeCertificate", **parameters)


# ---------------------------------------------------------------------------------------------
# Response
# ---------------------------------------------------------------------------------------------


def with_reads(response: Mapping, reads_response: Mapping) -> dict:
    """response with the entries of the calls reads_response answered (the verification reads, by id) replaced."""
    fresh = {entry.get("id"): entry for entry in reads_response.get("calls") or ()}
    return dict(response, calls=[fresh.get(entry.get("id"), entry) for entry in response.get("calls") or ()])


def shared_source_guard_id(step_number: int, source_number: int) -> str:
    """The id of the guard, right before pinning a shared send connector (step), that a source server holds the certificate."""
    return "%sstep%d_source%d" % (GUARD_PREFIX, step_number, source_number)


SHARED_SOURCE_GUARD = re.compile(r"\A%sstep\d+_source\d+\Z" % GUARD_PREFIX)  # shared_source_guard_id's ids


def is_shared_source_guard(call_id: str) -> bool:
    """Whether a guard is the check, right before a send connector pin, that another source server holds the certificate."""
    return bool(SHARED_SOURCE_GUARD.match(call_id or ""))


def failed_guard(response: Mapping) -> str | None:
    """The id of the guard that failed (a mismatch or an error: either aborts the batch), else None."""
    for entry in response.get("calls") or ():
        if str(entry.get("id", "")).startswith(GUARD_PREFIX) and (entry.get("guard_failed") or not entry.get("ok")):
            return entry.get("id")
    return None


def step_outcomes(plan: _plan.Plan, response: Mapping) -> list:
    """Per step: {"status": applied | failed | skipped, "error": the runner's error or None}."""
    entries = {entry.get("id"): entry for entry in response.get("calls") or ()}  # run_request checked every call is answered
    outcomes = []
    for number in range(1, len(plan.steps) + 1):
        entry = entries[step_id(number)]
        if entry.get("ok"):
            outcomes.append({"status": APPLIED, "error": None})
        elif entry.get("skipped"):
            outcomes.append({"status": SKIPPED, "error": None})
        else:
            outcomes.append({"status": FAILED, "error": entry.get("error") or {}})
    return outcomes


def _step_failure(host: str, plan: _plan.Plan, outcomes: list, failed: int) -> str:
    error = outcomes[failed]["error"]
    applied = ["step %d (%s)" % (n + 1, step.describe()) for n, step in enumerate(plan.steps) if outcomes[n]["status"] == APPLIED]
    skipped = ["step %d (%s)" % (n + 1, step.describe()) for n, step in enumerate(plan.steps) if outcomes[n]["status"] == SKIPPED]
    return "%s: step %d of %d (%s) failed: %s: %s%s. Applied: %s. Not run: %s. The result shows the state as re-read; " \
           "run again to finish." % (
               host, failed + 1, len(plan.steps), plan.steps[failed].describe(), error.get("type") or "error",
               error.get("message") or "", " [%s]" % error["fqid"] if error.get("fqid") else "",
               "; ".join(applied) or "nothing", "; ".join(skipped) or "nothing") + (
               " %s." % SNAPIN_CERTIFICATE_ADVICE[0].upper() + SNAPIN_CERTIFICATE_ADVICE[1:]
               if SNAPIN_CERTIFICATE_ERROR in str(error.get("message")) else "")


def internal_transport_failures(host: str, plan: _plan.Plan, after: _snapshot.ServerSnapshot) -> list:
    """What the re-read says is wrong with the internal transport certificate the plan had to keep
    (empty: it is there, the one intended, enabled for SMTP). Checked after every mutating round
    trip, whatever the steps were, so that a run never reports success with internal mail flow broken."""
    intended = plan.internal_transport_thumbprint
    restore = "Restore it: Enable-ExchangeCertificate -Thumbprint %s -Services SMTP -Force" % intended
    if after.transport is None:
        failure = next((f.message for f in after.failures if f.call_id == "transport"), "it returned nothing")
        return ["%s: the re-read of Get-TransportService failed (%s), so the internal transport certificate is not verified; "
                "check it before anything else: Get-TransportService %s | fl InternalTransportCertificateThumbprint"
                % (host, failure, after.server.name or host)]
    current = after.internal_transport_thumbprint
    if current != intended:
        return ["%s: InternalTransportCertificateThumbprint is %s, it must be %s. %s" % (host, current or "empty", intended, restore)]
    certificate = next((c for c in after.certificates if c.thumbprint == intended), None)
    if certificate is None:
        return ["%s: the internal transport certificate %s is no longer on the server: internal mail flow breaks. Import it again "
                "or create a new one (HM311)." % (host, intended)]
    if _plan.SMTP not in certificate.services:
        return ["%s: the internal transport certificate %s is no longer enabled for SMTP: internal mail flow breaks. %s."
                % (host, intended, restore)]
    return []


def _not_converged(host: str, plan: _plan.Plan, remaining: _plan.Plan, after: _snapshot.ServerSnapshot) -> str:
    message = "%s: the re-read state is not the desired one: %s." % (
        host, "; ".join(remaining.blockers) or "; ".join("%s (%s)" % (step.describe(), step.reason) for step in remaining.steps))
    tried = {step.target for step in plan.steps if step.action == _plan.DROP_SMTP}
    if any(step.action == _plan.DROP_SMTP and step.target in tried for step in remaining.steps):
        pin = ("set the send connector's TlsCertificateName on a Mailbox server (EdgeSync copies it to this Edge Transport "
               "server)" if after.server.is_edge else "pin the connectors (pin_connectors)")
        message += (" Enable-ExchangeCertificate left SMTP enabled (Exchange documents services as additive): %s so that the "
                    "certificate is mitigated, or remove it (remove_untrusted). Until then every run tries again." % pin)
    return message


# ---------------------------------------------------------------------------------------------
# Result facts
# ---------------------------------------------------------------------------------------------


def _step_facts(step: _plan.Step) -> dict:
    return {
        "action": step.action,
        "target": step.target,
        "description": step.describe(),
        "reason": step.reason,
        "services": sorted(step.services) if step.services is not None else None,
        "force": step.force,
        "connector_kind": step.connector_kind,
        "tls_certificate_name": step.tls_certificate_name,
        "certificate": step.certificate,
        "shared_with": list(step.shared_with),
    }


def _state_facts(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping, options: _plan.SmtpOptions) -> dict:
    certificates, connectors = _plan.assess(snapshot, verdicts, options)
    by_thumbprint = {c.thumbprint: c for c in snapshot.certificates}
    return {
        "internal_transport_certificate": snapshot.internal_transport_thumbprint,
        "certificates": [_certificate_facts(by_thumbprint[a.thumbprint], verdicts, a) for a in certificates],
        "connectors": [_connector_facts(a) for a in connectors],
    }


def _certificate_facts(certificate: _model.Certificate, verdicts: Mapping, assessment: _plan.CertificateAssessment) -> dict:
    facts = certificate.x509
    verdict = verdicts.get(certificate.thumbprint)
    return {
        "thumbprint": certificate.thumbprint,
        "friendly_name": certificate.friendly_name,
        "subject": certificate.reported_subject or (facts.subject_windows if facts else None),
        "issuer": certificate.reported_issuer or (facts.issuer_windows if facts else None),
        "services": sorted(certificate.services),
        "trusted": assessment.trusted,
        "reasons": list(verdict.codes) if verdict else [],
        "in_scope": assessment.in_scope,
        "exempt": assessment.exempt,
        "exposed_by": list(assessment.exposed_by),
        "state": assessment.state,
    }


def _connector_facts(assessment: _plan.ConnectorAssessment) -> dict:
    connector = assessment.connector
    return {
        "kind": connector.kind,
        "identity": connector.identity,
        "fqdn": connector.selection_name,
        "exchange_online_names": list(connector.exchange_online_names),
        "shared_with": list(connector.shared_with),
        "tls_certificate_name": connector.tls_certificate_name,
        "selected_thumbprint": assessment.selected,
        "state": assessment.state,
        "problem": assessment.problem,
    }


def _connector_key(kind: str, identity: str) -> str:
    return "%s: %s" % (kind, identity)


def _bindings(snapshot: _snapshot.ServerSnapshot, services: Mapping, tls_names: Mapping) -> dict:
    """What the modules change, in a form whose equality means "nothing changed"."""
    return {
        "internal_transport_certificate": snapshot.internal_transport_thumbprint,
        "certificates": {thumbprint: _plan.format_services(value) for thumbprint, value in sorted(services.items())},
        "connectors": {_connector_key(c.kind, c.identity): tls_names.get(c.identity, c.tls_certificate_name)
                       for c in _plan.cloud_connectors(snapshot)},
    }


def _current(snapshot: _snapshot.ServerSnapshot) -> dict:
    return _bindings(snapshot, {c.thumbprint: c.services for c in snapshot.certificates}, {})


def _diff(before: _snapshot.ServerSnapshot, after: _snapshot.ServerSnapshot) -> dict:
    return {"before": _current(before), "after": _current(after)}


def _intended_diff(snapshot: _snapshot.ServerSnapshot, plan: _plan.Plan) -> dict:
    return {"before": _current(snapshot),
            "after": _bindings(snapshot, _plan.intended_services(snapshot, plan), _plan.intended_tls_names(plan))}

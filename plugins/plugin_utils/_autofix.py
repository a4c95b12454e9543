# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Whether enforce removes a finding: asked of the planner, not predicted.

clears() plans the server as enforce would, plays the plan on a copy of the snapshot as Exchange runs
it, and returns the findings present now that are gone afterwards. Enable-ExchangeCertificate is
documented as additive while KB 2888788 uses it to replace the services (exchange-facts.md), so the
plan is played under both readings and a finding counts as cleared only when it is gone under both:
auto_fix never promises what one reading of Exchange would not deliver. The facts carry the answer
(`enforce.clears`), so findings rebuilt from stored JSON read it. Pure Python, no Ansible imports.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Callable, Mapping

from . import _facts, _findings, _plan, _snapshot

READINGS = ("replace", "additive")


def applied(snapshot: _snapshot.ServerSnapshot, plan: _plan.Plan, reading: str) -> _snapshot.ServerSnapshot:
    """The snapshot as it is once the plan's steps ran, under one reading of Enable-ExchangeCertificate."""
    services, internal_transport = _plan.final_state(snapshot, plan.steps)
    if reading == "additive":
        # Services only grow: an Enable step adds what it passes to what the certificate had.
        current = {c.thumbprint: c.services for c in snapshot.certificates}
        services = {thumbprint: value | current.get(thumbprint, frozenset()) for thumbprint, value in services.items()}
    certificates = tuple(dataclasses.replace(c, services=frozenset(services[c.thumbprint]))
                         for c in snapshot.certificates if c.thumbprint in services)
    transport = snapshot.transport
    if transport is not None and internal_transport != transport.internal_transport_certificate_thumbprint:
        transport = dataclasses.replace(transport, internal_transport_certificate_thumbprint=internal_transport)
    return dataclasses.replace(_plan.with_pins(snapshot, _plan.intended_tls_names(plan)), certificates=certificates, transport=transport)


def _keys(facts: Mapping, now: datetime.datetime) -> set:
    return {(f.id, f.subject) for f in _findings.server_findings(facts, _findings.Options(now=now))}


def clears(snapshot: _snapshot.ServerSnapshot, verdicts: Mapping, facts: Mapping, now: datetime.datetime,
           plan: _plan.Plan) -> list:
    """[(finding id, subject)] of the findings of facts (the snapshot's) that the plan (enforce's, for
    this snapshot) removes whichever way Exchange reads Enable-ExchangeCertificate."""
    # A change to a send connector other servers also send through runs only when each of them holds the
    # certificate (the enforcer checks it in the mutating round trip); one server's facts cannot tell,
    # so what only such a step would clear is not promised.
    plan = dataclasses.replace(plan, steps=tuple(step for step in plan.steps if not step.shared_with))
    if plan.blocked or not plan.steps:
        return []  # a blocked plan changes nothing; a converged server has nothing left that enforce removes
    cleared = _keys(facts, now)
    for reading in READINGS:
        after = applied(snapshot, plan, reading)
        # The same certificates, so the same verdicts: trust is judged for the names Exchange Online
        # checks, which no step changes (_facts.judged_names).
        cleared -= _keys(_facts.server_facts(after, verdicts, now), now)
    return sorted(cleared)


def annotate(facts: dict, snapshot: _snapshot.ServerSnapshot, verdicts: Mapping, now: datetime.datetime,
             plan: _plan.Plan | None = None, planner: Callable | None = None) -> dict:
    """facts (server_facts of the snapshot) with `enforce.clears`, what the findings' auto_fix reads: of
    plan, or of what planner(snapshot, verdicts) plans (default: smtp_certificate's defaults)."""
    if plan is None:
        plan = (planner or _plan.plan_smtp_certificate)(snapshot, verdicts)
    facts["enforce"] = {"clears": [list(key) for key in clears(snapshot, verdicts, facts, now, plan)]}
    return facts

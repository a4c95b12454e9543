"""One exposure model (plugins/plugin_utils/_exposure.py): the facts, the planner and the findings agree
on which certificate faces Exchange Online, and auto_fix is what planning then re-planning clears."""

from __future__ import annotations

import dataclasses

from hypothesis import given, strategies as st

from test_plan import NOW, PROPERTY_SETTINGS, apply_plan, options, send_connector, servers, snapshot, thumbprint, tls_name, verdicts_of

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _autofix, _exposure, _facts, _findings, _model, _plan


def presented_as_exchange_selects(server) -> set:
    """An oracle written from exchange-facts.md, independent of _exposure: the thumbprints an enabled
    cloud connector may present. Empty TlsCertificateName: any SMTP certificate with its key whose
    CertificateDomains match the connector's FQDN (else the server FQDN); set: the one it names that
    expires last; malformed or naming nothing: none."""
    presented = set()
    cloud = [c for c in server.send_connectors if c.is_cloud] + [c for c in server.receive_connectors if c.accepts_cloud_services_mail]
    for connector in cloud:
        if connector.enabled is False:
            continue
        if not connector.tls_certificate_name:
            name = connector.fqdn or server.fqdn
            presented |= {c.thumbprint for c in server.certificates
                          if "SMTP" in c.services and c.has_private_key is not False and _model.exchange_domain_matches(name, c)}
            continue
        parsed = _model.parse_tls_certificate_name(connector.tls_certificate_name)
        named = _model.certificates_matching_tls_name(parsed, server.certificates) if parsed else ()
        presented |= {named[0].thumbprint} if named else set()
    return presented


def facts_of(server, plan) -> dict:
    verdicts = verdicts_of(server)
    return _autofix.annotate(_facts.server_facts(server, verdicts, NOW), server, verdicts, NOW, plan)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_facts_planner_and_findings_judge_the_same_certificate_as_facing_exchange_online(data):
    server = data.draw(servers())
    chosen = data.draw(options(server))
    verdicts = verdicts_of(server)
    facts = facts_of(server, _plan.plan_smtp_certificate(server, verdicts, chosen))
    expected = presented_as_exchange_selects(server)

    in_facts = {c["thumbprint"] for c in facts["certificates"] if c["faces_exchange_online"]}
    assessments = _plan.assess(server, verdicts, chosen)[0]
    # The planner lists exposure for untrusted certificates (a trusted one facing Exchange Online is the goal).
    by_planner = {a.thumbprint for a in assessments if a.exposed_by}
    untrusted = {c.thumbprint for c in server.certificates if not verdicts[c.thumbprint].trusted}
    view = _findings.ServerFacts(facts, _findings.Options(now=NOW))
    by_findings = {view.thumbprint(c) for c in view.certificates if view.is_facing(c)}

    assert in_facts == expected == by_findings
    assert by_planner == expected & untrusted
    # A report rebuilt from the stored JSON reads the same exposure.
    assert _exposure.Exposure.from_facts(facts["exposure"]) == server.exposure


@PROPERTY_SETTINGS
@given(data=st.data())
def test_auto_fix_is_true_exactly_when_planning_then_re_planning_clears_the_finding(data):
    server = data.draw(servers())
    chosen = data.draw(options(server))
    plan = _plan.plan_smtp_certificate(server, verdicts_of(server), chosen)
    findings = _findings.server_findings(facts_of(server, plan), {"now": NOW})
    # Played by the test's own model of Exchange (test_plan.apply_plan), under both readings of
    # Enable-ExchangeCertificate; the state after is judged with its own plan, as the next run would.
    # A change to a send connector that other servers share runs only when they all hold the
    # certificate, which this server's facts cannot tell: such steps promise nothing.
    plan = dataclasses.replace(plan, steps=tuple(step for step in plan.steps if not step.shared_with))
    survivors = set()
    for behavior in ("replace", "additive"):
        after = apply_plan(server, plan, behavior)
        again = _plan.plan_smtp_certificate(after, verdicts_of(after), chosen)
        survivors |= {(f.id, f.subject) for f in _findings.server_findings(facts_of(after, again), {"now": NOW})}
    for finding in findings:
        cleared = bool(plan.steps) and not plan.blocked and (finding.id, finding.subject) not in survivors
        assert finding.auto_fix == cleared, (finding.id, finding.subject, [s.describe() for s in plan.steps])


def test_only_the_renewal_a_pin_selects_faces_exchange_online():
    # Issue 12 item 1: the old copy of a renewed certificate (same issuer and subject, earlier expiry)
    # is not what the pin selects, so it does not face Exchange Online.
    server = snapshot(("public", "IIS, SMTP"), ("public_renewed", "IIS, SMTP"),
                      send=send_connector(tls_name("public")))
    facing = {c["thumbprint"] for c in facts_of(server, _plan.plan_smtp_certificate(server, verdicts_of(server)))["certificates"]
              if c["faces_exchange_online"]}
    assert facing == {thumbprint("public_renewed")}


def test_a_pin_of_a_shared_send_connector_is_not_promised_as_an_auto_fix():
    # Issue 12 item 3: whether the other source servers hold the certificate decides whether enforce
    # may pin an organisation-wide connector; one server's audit cannot see it.
    server = snapshot(("public", "IIS, SMTP"), ("internal", "SMTP"), send=send_connector(sources=("EX01", "EX02")))
    plan = _plan.plan_smtp_certificate(server, verdicts_of(server))
    assert any(step.action == _plan.PIN_CONNECTOR and step.shared_with == ("EX02",) for step in plan.steps)
    findings = _findings.server_findings(facts_of(server, plan), {"now": NOW})
    assert not [f.id for f in findings if f.auto_fix and f.subject == "Outbound to Office 365"]

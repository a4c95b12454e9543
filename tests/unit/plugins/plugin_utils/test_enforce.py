"""From a plan to one mutating round trip and back (plugins/plugin_utils/_enforce.py).

The requests go to the lab's Exchange emulation in-process (ExchangeServer.handle_request executes a
decoded runner request exactly as it does behind WinRM), so these tests see Exchange's semantics -
both readings of Enable-ExchangeCertificate, guards, aborts, injected cmdlet faults - without the
transport. tests/integration/test_enforce.py runs the modules through ansible-playbook and WinRM.
"""

from __future__ import annotations

import datetime
import functools
import os

import pytest

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _enforce, _plan, _trust
from tests.lab.exchange.fleet import Fleet

FLEETS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab", "fleets")
SEND_CONNECTOR = "Outbound to Office 365"


def load(name: str) -> Fleet:
    return Fleet.load(os.path.join(FLEETS, name + ".yml"))


def enforcer(fleet: Fleet, server: str, planner=_plan.plan_smtp_certificate, **options) -> _enforce.Enforcer:
    smtp_options = _plan.SmtpOptions(**options)
    if planner is _plan.plan_smtp_certificate:
        planner = functools.partial(planner, options=smtp_options)
    return _enforce.Enforcer(host=server, planner=planner, store=_trust.trust_store_from_pem(fleet.trust_bundle_pem(), "lab"),
                             now=datetime.datetime.now(datetime.timezone.utc), min_key_bits=2048, session_load="auto",
                             options=smtp_options)


def run(fleet: Fleet, server: str, check_mode: bool = False, **options):
    """One module run: (result fields, failure, the planned run)."""
    target = fleet.servers[server]
    engine = enforcer(fleet, server, **options)
    planned = engine.plan(target.handle_request(engine.audit_request()))
    response = None
    if planned.plan.steps and not check_mode:
        response = target.handle_request(engine.enforcement_request(planned))
    facts, failure = engine.report(planned, response)
    return facts, failure, planned


def certificate_state(facts: dict, source: str, fleet: Fleet, server: str) -> str:
    thumbprint = next(c.thumbprint for c in fleet.servers[server].certificates.values() if c.source == source)
    return next(c["state"] for c in facts["certificates"] if c["thumbprint"] == thumbprint)


def mutations(fleet: Fleet, server: str) -> list:
    return [m["cmdlet"] for m in fleet.servers[server].mutations]


def test_the_mutating_request_has_guards_then_steps_then_the_audit_reads():
    fleet = load("kb2888788")
    engine = enforcer(fleet, "EX02")
    planned = engine.plan(fleet.servers["EX02"].handle_request(engine.audit_request()))
    request = engine.enforcement_request(planned)
    assert request["read_only"] is False
    ids = [call["id"] for call in request["calls"]]
    # Every plan guards the internal transport certificate it must leave enabled for SMTP (issue 16).
    assert ids[:6] == ["guard_certificates", "guard_transport", "guard_connector2", "step1", "guard_step2_source1", "step2"]
    assert ids[6:] == [call["id"] for call in engine.audit_request()["calls"]]
    guard_certificates, guard_transport, guard_connector, drop, guard_sibling, pin = request["calls"][:6]
    assert guard_transport["expect"] == [{"InternalTransportCertificateThumbprint": fleet.servers["EX02"].internal_transport_thumbprint}]
    assert {row["Thumbprint"] for row in guard_certificates["expect"]} == set(fleet.servers["EX02"].certificates)
    assert guard_connector["cmdlet"] == "Get-SendConnector" and guard_connector["expect"] == [{"Identity": SEND_CONNECTOR}]
    # The connector is EX01's too: EX01 must hold the certificate it gets pinned to.
    public = certificate_thumbprint(fleet, "EX02", "public")
    assert guard_sibling["parameters"] == {"Server": "EX01", "Thumbprint": public}
    assert guard_sibling["expect"] == [{"Thumbprint": public, "HasPrivateKey": True}]
    assert drop["cmdlet"] == "Enable-ExchangeCertificate"
    assert drop["parameters"]["Services"] == "IMAP, POP"  # IIS is kept by not naming it
    assert drop["parameters"]["Confirm"] is False and "Force" not in drop["parameters"]
    assert pin["cmdlet"] == "Set-SendConnector" and pin["parameters"]["Identity"] == SEND_CONNECTOR


@pytest.mark.parametrize("server, behavior, expected", [("EX01", "additive", _plan.MITIGATED), ("EX02", "replace", _plan.COMPLIANT)])
def test_kb2888788_is_remediated_under_both_enable_behaviours(server, behavior, expected):
    fleet = load("kb2888788")
    assert fleet.servers[server].enable_behavior == behavior
    internal_transport = fleet.servers[server].internal_transport_thumbprint
    facts, failure = run(fleet, server)[:2]
    assert failure is None
    assert facts["changed"] is True
    assert [step["status"] for step in facts["steps"]] == ["applied", "applied"]
    assert certificate_state(facts, "internal", fleet, server) == expected
    assert facts["internal_transport_certificate"] == internal_transport
    assert fleet.servers[server].status()["mail_flow"]["delivered"] is True
    # What certificate_info would say about the re-read state, for the role's reports.
    reread = {c["thumbprint"]: c for c in facts["facts"]["certificates"]}
    assert reread[certificate_thumbprint(fleet, server, "internal")]["verdict"]["trusted"] is False
    assert ("SMTP" in reread[certificate_thumbprint(fleet, server, "internal")]["services"]) is (expected == _plan.MITIGATED)

    again, failure, planned = run(fleet, server)
    assert failure is None and planned.plan.steps == () and again["changed"] is False


def test_a_server_that_changed_since_the_plan_is_not_touched():
    fleet = load("kb2888788")
    target = fleet.servers["EX02"]
    engine = enforcer(fleet, "EX02")
    planned = engine.plan(target.handle_request(engine.audit_request()))
    public = next(c for c in target.certificates.values() if c.source == "public")
    public.services = 0  # someone unbinds it between the audit and the change
    facts, failure = engine.report(planned, target.handle_request(engine.enforcement_request(planned)))
    assert "changed since the plan" in failure and "nothing was applied" in failure
    assert {step["status"] for step in facts["steps"]} == {"skipped"}
    assert facts["changed"] is False
    assert mutations(fleet, "EX02") == []
    assert next(c for c in facts["certificates"] if c["thumbprint"] == public.thumbprint)["services"] == []


def test_a_sibling_that_pinned_the_shared_send_connector_first_does_not_abort_this_server():
    fleet = load("kb2888788")
    engines = {name: enforcer(fleet, name) for name in ("EX01", "EX02")}
    planned = {name: engine.plan(fleet.servers[name].handle_request(engine.audit_request())) for name, engine in engines.items()}
    for name in ("EX02", "EX01"):  # both planned before either changed anything
        response = fleet.servers[name].handle_request(engines[name].enforcement_request(planned[name]))
        facts, failure = engines[name].report(planned[name], response)
        assert failure is None, failure
        assert [step["status"] for step in facts["steps"]] == ["applied", "applied"]
    assert [m["cmdlet"] for m in fleet.servers["EX01"].mutations] == ["Enable-ExchangeCertificate", "Set-SendConnector"]


def test_a_shared_send_connector_is_not_pinned_to_a_certificate_another_source_server_lacks():
    # expiring: EX01 and EX02 send through one connector with different certificates.
    fleet = load("expiring")
    engine = enforcer(fleet, "EX01", planner=_plan.plan_send_connector_tls)
    target = fleet.servers["EX01"]
    planned = engine.plan(target.handle_request(engine.audit_request()))
    facts, failure = engine.report(planned, target.handle_request(engine.enforcement_request(planned)))
    assert failure.startswith("EX01: EX02 also sends through send connector '%s' but does not hold certificate" % SEND_CONNECTOR)
    assert facts["changed"] is False and mutations(fleet, "EX01") == []
    assert facts["blocked"] == [failure]  # what enforcement cannot do: the role reports it as cannot_fix
    assert fleet.servers["EX02"].status()["mail_flow"]["delivered"] is True


SIBLING_WITHOUT_THE_CERTIFICATE = {
    "organization": {"name": "Contoso Ltd", "domain": "contoso.com", "hybrid": {"tls_certificate": None},
                     "send_connectors": [{"name": SEND_CONNECTOR, "cloud": True, "fqdn": "mail.contoso.com",
                                          "tls_certificate": None, "source_servers": ["EX01", "EX02"]}]},
    "certificates": {
        "public": {"subject": "CN=mail.contoso.com, O=Contoso Ltd, C=US", "issuer": "public_ca", "sans": ["mail.contoso.com"]},
        "internal": {"subject": "CN=mail.contoso.com, OU=IT, O=Contoso Ltd, C=US", "issuer": "enterprise_ca",
                     "sans": ["mail.contoso.com"], "not_before": "-2d"},
    },
    "servers": [
        {"name": "EX01", "enable_behavior": "replace",
         "certificates": [{"id": "public", "services": "IIS, SMTP"}, {"id": "internal", "services": "IMAP, POP, SMTP"}]},
        {"name": "EX02", "certificates": [{"id": "internal", "services": "SMTP"}]},
    ],
}


def test_the_steps_before_an_unsafe_shared_pin_stay_applied():
    fleet = Fleet.from_dict(SIBLING_WITHOUT_THE_CERTIFICATE, "sibling_without_the_certificate")
    facts, failure = run(fleet, "EX01")[:2]
    assert [(step["action"], step["connector_kind"], step["status"]) for step in facts["steps"]] == [
        ("drop_smtp", None, "applied"), ("pin_connector", "receive", "applied"), ("pin_connector", "send", "skipped")]
    assert failure.startswith("EX01: EX02 also sends through send connector '%s'" % SEND_CONNECTOR)
    assert "so step 3 and the ones after it were not run" in failure
    assert facts["changed"] is True
    assert certificate_state(facts, "internal", fleet, "EX01") == _plan.COMPLIANT  # replace: SMTP dropped
    assert fleet.servers["EX01"].status()["mail_flow"]["delivered"] is True
    assert fleet.servers["EX01"].org.send_connectors[0].tls_certificate_name is None


def test_a_failed_step_is_reported_with_the_applied_ones_and_a_rerun_converges():
    fleet = load("kb2888788")
    fleet.servers["EX02"].inject_cmdlet_fault("Set-SendConnector")
    facts, failure = run(fleet, "EX02")[:2]
    assert [step["status"] for step in facts["steps"]] == ["applied", "failed"]
    assert failure.startswith("EX02: step 2 of 2 (set TlsCertificateName of send connector 'Outbound to Office 365'")
    assert "ADTransientException" in failure
    assert "Applied: step 1 (drop SMTP from %s" % certificate_thumbprint(fleet, "EX02", "internal") in failure
    assert certificate_state(facts, "internal", fleet, "EX02") == _plan.COMPLIANT  # the re-read state

    facts, failure, planned = run(fleet, "EX02")
    assert failure is None
    assert fleet.servers["EX02"].status()["mail_flow"]["delivered"] is True
    assert run(fleet, "EX02")[2].plan.steps == ()


def certificate_thumbprint(fleet: Fleet, server: str, source: str) -> str:
    return next(c.thumbprint for c in fleet.servers[server].certificates.values() if c.source == source)


TRUSTED_WITHOUT_SMTP = {
    "organization": {"name": "Contoso Ltd", "domain": "contoso.com", "hybrid": {"tls_certificate": "public"}},
    "certificates": {"public": {"subject": "CN=mail.contoso.com, O=Contoso Ltd, C=US", "issuer": "public_ca",
                                "sans": ["mail.contoso.com"]}},
    "servers": [{"name": "EX01", "certificates": [{"id": "public", "services": "IIS"}]}],
}


def test_enabling_smtp_restores_the_internal_transport_certificate():
    fleet = Fleet.from_dict(TRUSTED_WITHOUT_SMTP, "trusted_without_smtp")
    target = fleet.servers["EX01"]
    internal_transport = target.internal_transport_thumbprint
    assert target.status()["mail_flow"]["delivered"] is False  # UnknownCredentials: pinned, but not enabled for SMTP
    facts, failure, planned = run(fleet, "EX01")
    assert failure is None
    assert [step.action for step in planned.plan.steps] == [_plan.ENABLE_SMTP, _plan.RESTORE_INTERNAL_TRANSPORT]
    changes = [change for mutation in target.mutations for change in mutation["changes"]]
    assert any(change.startswith("InternalTransportCertificateThumbprint: %s ->" % internal_transport) for change in changes)
    assert target.internal_transport_thumbprint == internal_transport == facts["internal_transport_certificate"]
    assert "SMTP" in next(c["services"] for c in facts["certificates"] if c["thumbprint"] == certificate_thumbprint(fleet, "EX01", "public"))
    assert target.web_thumbprint == certificate_thumbprint(fleet, "EX01", "public")  # IIS binding untouched
    assert target.status()["mail_flow"]["delivered"] is True


def test_check_mode_returns_the_plan_and_the_intended_diff_without_a_second_request():
    fleet = load("stale_tls_name")
    facts, failure, planned = run(fleet, "EX01", check_mode=True)
    assert failure is None and facts["changed"] is True
    assert {step["status"] for step in facts["steps"]} == {"planned"}
    assert facts["diff"]["after"]["connectors"]["send: %s" % SEND_CONNECTOR] == planned.plan.steps[0].tls_certificate_name
    assert mutations(fleet, "EX01") == []


def test_the_interlock_fails_without_a_step():
    fleet = load("only_untrusted")
    facts, failure, planned = run(fleet, "EX01")
    assert planned.plan.steps == () and facts["changed"] is False and facts["plan"] == []
    assert failure.startswith("EX01: mail.contoso.com") and "Install a certificate for mail.contoso.com" in failure
    assert mutations(fleet, "EX01") == []


def test_without_pinning_the_additive_behaviour_is_reported_as_not_converged():
    fleet = load("kb2888788")
    facts, failure = run(fleet, "EX01", pin_connectors=False)[:2]
    assert facts["changed"] is False  # Enable-ExchangeCertificate ran and changed nothing
    assert "Exchange documents services as additive" in failure
    assert certificate_state(facts, "internal", fleet, "EX01") == _plan.NONCOMPLIANT


def test_send_connector_tls_repoints_a_stale_name():
    fleet = load("stale_tls_name")
    engine = enforcer(fleet, "EX02", planner=functools.partial(_plan.plan_send_connector_tls, receive_connectors=True))
    target = fleet.servers["EX02"]
    planned = engine.plan(target.handle_request(engine.audit_request()))
    facts, failure = engine.report(planned, target.handle_request(engine.enforcement_request(planned)))
    assert failure is None
    assert {c["kind"]: c["state"] for c in facts["connectors"]} == {"send": _plan.PINNED, "receive": _plan.PINNED}
    assert any("Hybrid Configuration Wizard" in note for note in facts["notes"])
    assert target.status()["mail_flow"]["delivered"] is True

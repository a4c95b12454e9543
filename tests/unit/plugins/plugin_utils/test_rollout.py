"""_rollout: what exchange_certificate plans from an audit of a lab server, and the calls it sends."""

from __future__ import annotations

import base64
import datetime
import os

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _facts, _pfx, _plan, _rollout, _snapshot, _trust
from tests.lab.exchange.fleet import Fleet

FLEETS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab", "fleets")
NOW = datetime.datetime.now(datetime.timezone.utc)
PASSWORD = "Rollout-Unit!"
READS = _snapshot.audit_calls(event_lookback_days=0)


def load(name):
    return Fleet.load(os.path.join(FLEETS, name + ".yml"))


def audit(server):
    response = server.handle_request(_snapshot.request(READS, read_only=True))
    return response, _snapshot.ServerSnapshot.from_response(response, server.name.lower(), READS)


def store_of(fleet):
    return _trust.trust_store_from_pem(fleet.trust_bundle_pem(), "lab.pem")


def verdicts_of(snapshot, store):
    return _facts.evaluate(snapshot, store, NOW)


def present(fleet, server_name, cert_id, **options):
    server = fleet.servers[server_name]
    response, snapshot = audit(server)
    store = store_of(fleet)
    data = fleet.pfx(cert_id, PASSWORD)
    pfx = _pfx.inspect(data, PASSWORD, store=store, names=None, now=NOW)
    rollout = _rollout.plan_present(snapshot, pfx, _rollout.Options(**options),
                                    {"__hybridmail": "bytes", "value": base64.b64encode(data).decode()},
                                    {"__hybridmail": "secure_string", "value": PASSWORD}, verdicts_of(snapshot, store))
    return server, response, snapshot, rollout


def test_absent_refuses_a_referenced_certificate_listing_every_reference():
    fleet = load("renewal")
    _response, snapshot = audit(fleet.servers["EX01"])
    rollout = _rollout.plan_absent(snapshot, fleet.issued("public_2025").thumbprint)
    assert rollout.blocked and not rollout.plan.steps
    message = rollout.blockers[0]
    for text in ("ex01: certificate", "send connector 'Outbound to Office 365'", "receive connector 'EX01\\Default Frontend EX01'",
                 "Get-HybridConfiguration's TlsCertificateName", "bound to IIS", "Nothing was changed"):
        assert text in message, text


def test_absent_never_removes_the_internal_transport_or_auth_certificate():
    fleet = load("renewal")
    _response, snapshot = audit(fleet.servers["EX01"])
    itc = _rollout.plan_absent(snapshot, snapshot.internal_transport_thumbprint)
    assert "internal transport certificate" in itc.blockers[0]
    auth = next(c for c in snapshot.certificates if c.is_auth_certificate)
    assert "Auth certificate" in _rollout.plan_absent(snapshot, auth.thumbprint).blockers[0]


def test_absent_of_an_unreferenced_certificate_is_one_guarded_removal_and_missing_is_nothing():
    fleet = load("mixed")
    response, snapshot = audit(fleet.servers["EX03"])
    internal = next(c for c in fleet.servers["EX03"].certificates.values() if c.source == "internal")
    rollout = _rollout.plan_absent(snapshot, internal.thumbprint)
    assert [s.action for s in rollout.plan.steps] == [_plan.REMOVE_CERTIFICATE]
    calls = [call for call, _m in _rollout.mutating_calls("ex03", rollout, response)]
    # Guards: the certificates, and the internal transport certificate every plan must keep (issue 16).
    assert [c["cmdlet"] for c in calls] == ["Get-ExchangeCertificate", "Get-TransportService", "Remove-ExchangeCertificate"]
    assert calls[0]["expect"]
    assert _rollout.plan_absent(snapshot, "0" * 40).empty


def _two_generations(pinned: bool) -> Fleet:
    subject = "CN=mail.contoso.com, O=Contoso Ltd, C=US"
    return Fleet.from_dict({
        "organization": {"hybrid": {"tls_certificate": "new" if pinned else None},
                         "send_connectors": [{"name": "Outbound to Office 365", "cloud": True, "fqdn": "mail.contoso.com",
                                              "tls_certificate": "new" if pinned else None, "source_servers": "all"}]},
        "certificates": {
            "old": {"subject": subject, "issuer": "public_ca", "sans": ["mail.contoso.com"], "not_before": "-300d", "not_after": "+20d"},
            "new": {"subject": subject, "issuer": "public_ca", "sans": ["mail.contoso.com"], "not_before": "-2d", "not_after": "+300d"},
        },
        "servers": [{"name": "EX01", "certificates": [{"id": "old", "services": "SMTP"}, {"id": "new", "services": "IIS, SMTP"}]}],
    })


def test_retired_removes_a_superseded_certificate_nothing_references():
    fleet = _two_generations(pinned=False)
    _response, snapshot = audit(fleet.servers["EX01"])
    rollout = _rollout.plan_retired(snapshot, verdicts_of(snapshot, store_of(fleet)))
    assert [(s.action, s.target) for s in rollout.plan.steps] == [(_plan.REMOVE_CERTIFICATE, fleet.issued("old").thumbprint)]


def test_retired_keeps_a_superseded_certificate_a_send_connector_names():
    fleet = _two_generations(pinned=True)
    _response, snapshot = audit(fleet.servers["EX01"])
    rollout = _rollout.plan_retired(snapshot, verdicts_of(snapshot, store_of(fleet)))
    assert not rollout.plan.steps
    assert "kept: send connector 'Outbound to Office 365' names it" in rollout.notes[0]


def test_present_orders_import_smtp_iis_restore_pins_then_hybrid():
    fleet = load("renewal")
    server, response, snapshot, rollout = present(fleet, "EX02", "renewed", services=frozenset({"SMTP", "IIS"}),
                                                  do_not_require_ssl=True, pin_connectors=True, hybrid_configuration=True)
    calls = [call for call, _m in _rollout.mutating_calls("ex02", rollout, response)]
    cmdlets = [(c["id"], c["cmdlet"]) for c in calls]
    assert cmdlets[0] == ("guard_certificates", "Get-ExchangeCertificate")
    order = [c for c in cmdlets if not c[0].startswith("guard_")]
    assert [c[1] for c in order] == ["Import-ExchangeCertificate", "Enable-ExchangeCertificate", "Enable-ExchangeCertificate",
                                     "Enable-ExchangeCertificate", "Set-ReceiveConnector", "Set-SendConnector",
                                     "Set-HybridConfiguration"]
    iis = next(c for c in calls if c["id"] == _rollout.IIS_ID)
    assert iis["parameters"]["Services"] == "IIS, SMTP" and iis["parameters"]["DoNotRequireSsl"] is True
    # The send connector is shared with EX01: right before its pin, EX01 must hold the certificate.
    source_guard = next(c for c in calls if c["id"].startswith("guard_step") and "source" in c["id"])
    assert source_guard["parameters"]["Server"] == "EX01"
    # The PFX and the password only as typed values of the import call.
    imported = calls[[c["id"] for c in calls].index(_rollout.IMPORT_ID)]
    assert imported["parameters"]["Password"] == {"__hybridmail": "secure_string", "value": PASSWORD}
    assert PASSWORD not in repr([c for c in calls if c["id"] != _rollout.IMPORT_ID])
    # Running the batch on the lab server reaches the state; EX01 lacks the certificate, so the shared pin stops.
    result = server.handle_request(_snapshot.request(calls + READS, read_only=False))
    outcomes = {o["action"]: o["status"] for o in _rollout.outcomes(rollout, result)}
    assert outcomes[_rollout.IMPORT] == "applied" and outcomes[_rollout.ENABLE_IIS] == "applied"
    assert outcomes[_rollout.PIN_HYBRID] == "skipped"


def test_present_is_idempotent_by_thumbprint():
    fleet = load("renewal")
    _server, _response, _snapshot_, rollout = present(fleet, "EX01", "public_2025")
    assert rollout.imports is None and rollout.empty


def test_a_certificate_whose_chain_the_server_cannot_complete_is_not_pinned():
    fleet = load("mixed")  # EX09 holds the public certificate without its intermediate
    server = fleet.servers["EX09"]
    response, snapshot = audit(server)
    store = store_of(fleet)
    thumbprint = fleet.issued("public").thumbprint
    finding = _rollout.chain_finding(snapshot, thumbprint, store, NOW, ("mail.contoso.com",), 2048)
    assert finding["complete"] is False and "incomplete" in finding["problem"] and "PartialChain" in finding["problem"]
    data = fleet.pfx("public", PASSWORD)
    pfx = _pfx.inspect(data, PASSWORD, store=store, names=None, now=NOW)
    rollout = _rollout.plan_present(snapshot, pfx, _rollout.Options(pin_connectors=True), {"__hybridmail": "bytes", "value": ""},
                                    None, verdicts_of(snapshot, store), finding["problem"])
    assert rollout.blocked and "ex09: not pinning %s" % thumbprint in rollout.blockers[0]
    assert response["calls"]


def test_pins_are_refused_for_a_certificate_that_does_not_cover_the_connector_names():
    fleet = load("renewal")
    _server, _response, _snap, rollout = present(fleet, "EX01", "other_name", pin_connectors=True)
    assert rollout.blocked and "covers www.fabrikam.com, none of the names Exchange Online checks here" in rollout.blockers[0]


def test_bindings_and_intended_diff():
    fleet = load("renewal")
    _server, _response, snapshot, rollout = present(fleet, "EX01", "renewed", pin_connectors=True, hybrid_configuration=True)
    thumbprint = fleet.issued("renewed").thumbprint
    before = _rollout.bindings(snapshot, [thumbprint])
    after = _rollout.intended(snapshot, rollout, [thumbprint], _rollout.final_services(snapshot, thumbprint, {"SMTP"}))
    assert before["certificates"][thumbprint] == "absent" and after["certificates"][thumbprint] == "SMTP"
    assert after["hybrid_tls_certificate_name"].startswith("<I>CN=Hybridmail Lab Public TLS CA 2026")
    assert after["connectors"]["send: Outbound to Office 365"] == after["hybrid_tls_certificate_name"]


def test_an_ecc_certificate_is_not_imported_and_enabled_where_exchanges_ecc_support_is_not_known_on():
    # Issue 12.7 (fleet ecc.yml): Enable-ExchangeCertificate would fail with KeyAlgorithmUnsupported after the import.
    fleet = load("ecc")
    server = fleet.servers["EX01"]
    server.certificates.pop(fleet.issued("ecc").thumbprint)  # the PFX is still to be imported
    _server, _response, _snapshot_, rollout = present(fleet, "EX01", "ecc")
    assert rollout.blocked and not rollout.plan.steps
    assert "KeyAlgorithmUnsupported" in rollout.blockers[0] and "New-SettingOverride" in rollout.blockers[0], rollout.blockers

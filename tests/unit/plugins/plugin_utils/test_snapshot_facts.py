"""ServerSnapshot and the certificate_info facts, over answers from the lab's Exchange emulation.

The lab answers the audit request the way runner.ps1 would on a real server (in-process here; the
integration tests go through WinRM), so these tests exercise parsing, hybrid detection and verdicts
on realistic data without a network.
"""

from __future__ import annotations

import datetime
import os

import pytest

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _args, _facts, _snapshot, _trust
from tests.lab.exchange.fleet import Fleet

FLEETS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab", "fleets")
NOW = datetime.datetime.now(datetime.timezone.utc)


def fleet(name: str) -> Fleet:
    return Fleet.load(os.path.join(FLEETS, name + ".yml"))


def audit(server, lookback_days=7):
    calls = _snapshot.audit_calls(lookback_days)
    response = server.handle_request(_snapshot.request(calls, read_only=True))
    return _snapshot.ServerSnapshot.from_response(response, server.name.lower(), calls)


def facts_of(server, store, thumbprints=None):
    snapshot = audit(server)
    return _facts.server_facts(snapshot, _facts.evaluate(snapshot, store, NOW), NOW, thumbprints)


def by_friendly_name(facts):
    return {c["friendly_name"]: c for c in facts["certificates"]}


def test_audit_request_is_read_only_and_uses_only_allowed_cmdlets():
    from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _runner
    calls = _snapshot.audit_calls()
    assert {c["cmdlet"] for c in calls} <= set(_runner.ALLOWED_CMDLETS)
    assert all(c["cmdlet"].startswith("Get-") for c in calls)
    assert len({c["id"] for c in calls}) == len(calls)
    assert "events" not in {c["id"] for c in _snapshot.audit_calls(event_lookback_days=0)}


def test_kb2888788_untrusted_smtp_certificate_faces_exchange_online(lab_store):
    facts = facts_of(fleet("kb2888788").servers["EX01"], lab_store)
    assert facts["hybrid_fqdns"] == ["mail.contoso.com"]
    certificates = by_friendly_name(facts)
    internal = certificates["Contoso internal mail (AD CS)"]
    public = certificates["Contoso public 2026"]
    assert internal["faces_exchange_online"] and "SMTP" in internal["services"]
    assert not internal["verdict"]["trusted"]
    assert [r["code"] for r in internal["verdict"]["reasons"]] == ["unknown_root"]
    assert public["faces_exchange_online"] and public["verdict"]["trusted"]
    assert public["chain"][0]["thumbprint"] == public["thumbprint"] and len(public["chain"]) == 3
    # Exchange's own opinion stays beside the verdict: the enterprise CA is trusted by the domain.
    assert internal["status"] == "Valid"
    cloud = [c for c in facts["send_connectors"] if c["is_cloud"]]
    assert [c["tls_certificate_name"] for c in cloud] == [None]


def test_kb2888788_event_and_queue(lab_store):
    facts = facts_of(fleet("kb2888788").servers["EX01"], lab_store)
    assert facts["exchange_online_queue"]["status"] == "Retry"
    assert "454 4.7.0" in facts["exchange_online_queue"]["last_error"]
    untrusted = [e for e in facts["events"] if e["untrusted_root"]]
    # The fleet also holds a 2004 from 9 days ago: outside the 7-day look-back.
    assert len(untrusted) == 1 and untrusted[0]["id"] == 2004


def test_internal_transport_and_auth_certificates_are_marked(lab_store):
    facts = facts_of(fleet("kb2888788").servers["EX01"], lab_store)
    internal_transport = [c for c in facts["certificates"] if c["is_internal_transport"]]
    auth = [c for c in facts["certificates"] if c["is_auth_certificate"]]
    assert [c["thumbprint"] for c in internal_transport] == [facts["internal_transport_certificate"]]
    assert internal_transport[0]["subject"] == "CN=EX01" and internal_transport[0]["is_self_signed"]
    assert len(auth) == 1 and not auth[0]["faces_exchange_online"]


def test_stale_tls_certificate_name_resolves_to_nothing(lab_store):
    facts = facts_of(fleet("stale_tls_name").servers["EX01"], lab_store)
    cloud = [c for c in facts["send_connectors"] if c["is_cloud"]]
    assert cloud and cloud[0]["tls_certificate_name"] and cloud[0]["tls_certificate_thumbprints"] == []


def test_edge_server_has_no_hybrid_configuration_and_no_failure(lab_store):
    edge_servers = [server for name, server in fleet("edge").servers.items() if name.startswith("EDGE")]
    assert edge_servers
    for server in edge_servers:
        facts = facts_of(server, lab_store)
        assert facts["server"]["is_edge"]
        assert facts["hybrid_configuration"] is None
        assert facts["warnings"] == []
        assert facts["hybrid_fqdns"] == ["mail.contoso.com"]


def test_incomplete_chain_is_told_apart_with_intermediates_from_the_bundle(tmp_path):
    edge = fleet("edge")
    bundle = tmp_path / "bundle.pem"
    # A bundle may carry intermediates: they are only known, never anchors.
    bundle.write_bytes(edge.trust_bundle_pem() + edge.organization.authorities["public_ca"].issued.pem)
    store = _trust.load_trust_bundle(str(bundle))
    codes = {c["friendly_name"]: [r["code"] for r in c["verdict"]["reasons"]]
             for c in facts_of(edge.servers["EDGE02"], store)["certificates"] if c["faces_exchange_online"] and not c["is_self_signed"]}
    assert codes and all(value == ["incomplete_chain"] for value in codes.values()), codes


def test_localized_servers_keep_non_ascii_names_and_detect_events(lab_store):
    for server in fleet("localized").servers.values():
        facts = facts_of(server, lab_store)
        subjects = " ".join(c["subject"] for c in facts["certificates"])
        assert "Müller GmbH" in subjects or "Česká pošta" in subjects
        assert any(e["untrusted_root"] for e in facts["events"]), server.name


def test_thumbprint_filter_limits_certificates_but_not_verdicts(lab_store):
    server = fleet("kb2888788").servers["EX01"]
    every = facts_of(server, lab_store)
    chosen = every["certificates"][0]["thumbprint"]
    assert [c["thumbprint"] for c in facts_of(server, lab_store, [chosen])["certificates"]] == [chosen]


def test_required_read_failing_names_host_and_call():
    server = fleet("healthy").servers["EX01"]
    server.inject_cmdlet_fault("Get-ExchangeCertificate", "The Microsoft Exchange Transport service is stopping.")
    with pytest.raises(_snapshot.SnapshotError, match=r"^ex01: Get-ExchangeCertificate \(certificates\) failed: .*stopping"):
        audit(server)


def test_optional_read_failing_becomes_a_warning(lab_store):
    server = fleet("healthy").servers["EX01"]
    server.inject_cmdlet_fault("Get-Queue", "The Microsoft Exchange Transport service isn't running.")
    facts = facts_of(server, lab_store)
    assert facts["exchange_online_queue"] is None
    assert len(facts["warnings"]) == 1 and facts["warnings"][0].startswith("Get-Queue (queues) failed")


@pytest.mark.parametrize("values, message", [
    (["not-a-thumbprint"], "40 hexadecimal digits"),
    (["AB" * 19], "40 hexadecimal digits"),
    ([], "must not be empty"),
])
def test_thumbprint_option_errors(values, message):
    with pytest.raises(_args.OptionError, match=message):
        _args.thumbprints(values)


def test_thumbprint_option_normalizes_copies_from_certificate_dialogs():
    assert _args.thumbprints(["ab cd" + "0" * 36, "AB:CD" + "0" * 36]) == ["ABCD" + "0" * 36]


def test_range_and_bundle_option_errors(tmp_path):
    with pytest.raises(_args.OptionError, match="event_lookback_days must be between 0 and 365, got 400"):
        _args.check_range("event_lookback_days", 400, 0, 365)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a bundle")
    with pytest.raises(_args.OptionError, match="no PEM certificate"):
        _args.trust_store({"min_key_size": 2048, "trust_bundle": str(garbage)})


def _fleet_with_session(name: str, auto: str) -> Fleet:
    import yaml

    with open(os.path.join(FLEETS, name + ".yml"), encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    for entry in data["servers"]:
        if entry.get("role") != "edge":  # Edge has no remote Exchange PowerShell
            entry["session"] = dict(entry.get("session") or {}, auto=auto)
    return Fleet.from_dict(data, clock=lambda: NOW)  # one clock for both fleets: same event and queue times


@pytest.mark.parametrize("name", ["kb2888788", "localized", "edge", "stale_tls_name"])
def test_local_and_remote_session_shapes_give_the_same_facts(name, lab_store):
    """The model and snapshot are proved against both shapes the runner can meet: snap-in objects and
    the deserialized objects of a remote_exchange session (enum names, dates with the server's offset,
    RawData as text). The facts must not depend on how the cmdlets were loaded."""
    local, remote = _fleet_with_session(name, "snapin"), _fleet_with_session(name, "remote_exchange")
    for server_name in local.servers:
        calls = _snapshot.audit_calls(7)
        answers = [fleet_.servers[server_name].handle_request(_snapshot.request(calls, read_only=True))
                   for fleet_ in (local, remote)]
        assert answers[1]["runner"]["load"] == ("snapin" if local.servers[server_name].is_edge else "remote_exchange")
        snapshots = [_snapshot.ServerSnapshot.from_response(answer, server_name.lower(), calls) for answer in answers]
        facts = [_facts.server_facts(snapshot, _facts.evaluate(snapshot, lab_store, NOW), NOW, None) for snapshot in snapshots]
        assert facts[0] == facts[1], server_name
        assert facts[0]["certificates"], server_name


def test_get_hybrid_configuration_missing_from_a_session_is_a_missing_permission_not_no_hybrid():
    """remote_session.yml EX02: the remote session lacks Get-HybridConfiguration (RBAC); on Edge it is no hybrid."""
    calls = _snapshot.audit_calls(event_lookback_days=0)
    response = fleet("remote_session").servers["EX02"].handle_request(_snapshot.request(calls, read_only=True))
    with pytest.raises(_snapshot.SnapshotError, match=r"^ex02: Get-HybridConfiguration \(hybrid\) failed: .*"
                       r"CommandNotFoundException\]\. Missing permission: a remote Exchange session holds only"):
        _snapshot.ServerSnapshot.from_response(response, "ex02", calls)
    edge = fleet("edge").servers["EDGE01"].handle_request(_snapshot.request(calls, read_only=True))
    assert _snapshot.ServerSnapshot.from_response(edge, "edge01", calls).hybrid is None

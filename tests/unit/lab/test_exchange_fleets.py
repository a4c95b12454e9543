"""Fleet files, the fleet builder and the fleet generator."""

from __future__ import annotations

import datetime
import glob
import io
import json
import os
import time

import pytest
import yaml
from cryptography import x509

from tests.lab.exchange import generate
from tests.lab.exchange.calls import call, request
from tests.lab.exchange.fleet import Fleet, FleetError

FLEETS = os.path.join(os.path.dirname(__file__), "..", "..", "lab", "fleets")
FLEET_FILES = sorted(glob.glob(os.path.join(FLEETS, "*.yml")))


def load(name, **kwargs):
    return Fleet.load(os.path.join(FLEETS, name + ".yml"), **kwargs)


def flow(fleet):
    """server -> (delivered, gateway reason or selection failure)."""
    result = {}
    for name, server in fleet.servers.items():
        mail = server.mail_flow
        reason = None
        if mail.get("routes_to_exchange_online"):
            reason = (mail["gateway"] or {}).get("reason") or mail["selection"]["failure"]
            if not mail["tls12_client_enabled"]:
                reason = "Tls12Disabled"
        result[name] = (mail.get("delivered"), reason)
    return result


def test_every_fleet_file_is_listed_and_loads():
    names = {os.path.basename(path)[:-4] for path in FLEET_FILES}
    assert names == {"healthy", "kb2888788", "stale_tls_name", "only_untrusted", "expiring", "edge", "localized",
                     "mixed", "preflight", "renewal", "planner_defects", "edge_untrusted", "client_frontend",
                     "partial_batch", "missing_intermediate", "ecc", "versions",
                     "second_hop", "snapin_certificates", "replication_delay", "remote_session"}
    for path in FLEET_FILES:
        fleet = Fleet.load(path)
        status = fleet.status()
        assert list(status) == list(fleet.servers)
        json.dumps(status, ensure_ascii=False)  # JSON-able as the control API serves it
        for server in fleet.servers.values():
            assert server.name and server.fqdn.endswith("." + fleet.organization.domain)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("healthy", {"EX01": (True, None), "EX02": (True, None), "EX03": (True, None)}),
        ("kb2888788", {"EX01": (False, "UntrustedRoot"), "EX02": (False, "UntrustedRoot")}),
        ("stale_tls_name", {"EX01": (False, "CertificateNotFound"), "EX02": (False, "NotTimeValid")}),
        ("only_untrusted", {"EX01": (False, "UntrustedRoot"), "EX02": (False, "UntrustedRoot")}),
        ("expiring", {"EX01": (True, None), "EX02": (True, None)}),
        ("edge", {"EX01": (None, None), "EDGE01": (True, None), "EDGE02": (False, "PartialChain")}),
        ("missing_intermediate", {"EX01": (True, None), "EX02": (False, "PartialChain")}),
        ("ecc", {"EX01": (False, "UnknownCredentials"), "EX02": (False, "UnknownCredentials")}),
        ("versions", {"EX13": (True, None), "EX16": (True, None), "EX19": (True, None), "EXSE": (True, None)}),
        ("localized", {"EXDE01": (False, "UntrustedRoot"), "EXCZ01": (False, "UntrustedRoot")}),
        ("renewal", {"EX01": (True, None), "EX02": (True, None)}),
        ("mixed", {"EX01": (True, None), "EX02": (True, None), "EX03": (False, "UntrustedRoot"),
                   "EX04": (False, "UntrustedRoot"), "EX05": (True, None), "EX06": (False, "UntrustedRoot"),
                   "EX07": (False, "CertificateNotFound"), "EX08": (False, "UntrustedRoot"),
                   "EX09": (False, "PartialChain"), "EX10": (False, "Tls12Disabled"), "EDGE01": (True, None)}),
    ],
)
def test_fleet_shows_the_intended_state(name, expected):
    assert flow(load(name)) == expected


def test_kb2888788_status_at_load():
    status = load("kb2888788").status()["EX01"]
    queue = status["mail_flow"]["queue"]
    assert queue["status"] == "Retry" and queue["next_hop_domain"] == "contoso.mail.onmicrosoft.com"
    assert "454 4.7.0" in queue["last_error"] and "UntrustedRoot" in queue["last_error"]
    assert any(e["id"] == 2004 and "UntrustedRoot" in e["message"] for e in status["events"])
    assert status["enable_behavior"] == "additive"
    smtp = [c for c in status["certificates"] if "SMTP" in c["services"] and "mail.contoso.com" in c["domains"]]
    assert {c["root_ca_type"] for c in smtp} == {"ThirdParty", "GroupPolicy"}
    assert status["send_connectors"][0]["TlsCertificateName"] is None
    assert status["hybrid_configuration"]["TlsCertificateName"].startswith("<I>")
    assert status["internal_transport_certificate"] == status["certificates"][0]["thumbprint"]


def test_expiring_fleet_dates():
    fleet = load("expiring")
    server = fleet.servers["EX01"]
    public = [c for c in server.certificates.values() if c.source == "public_short"][0]
    days = (public.issued.not_after - server.now()).days
    assert 18 <= days <= 20
    sha1 = [c for c in fleet.servers["EX02"].certificates.values() if c.source == "public_sha1"][0]
    assert sha1.issued.cert.signature_hash_algorithm.name == "sha1"


def test_trust_bundle_is_the_public_root_then_the_public_intermediates():
    fleet = load("mixed")
    certificates = x509.load_pem_x509_certificates(fleet.trust_bundle_pem())
    assert [c.subject.rfc4514_string() for c in certificates] == [
        "CN=Hybridmail Lab Public Root CA,O=Hybridmail Lab Trust Services,C=US",
        "CN=Hybridmail Lab Public TLS CA 2025,O=Hybridmail Lab Trust Services,C=US",
        "CN=Hybridmail Lab Public TLS CA 2026,O=Hybridmail Lab Trust Services,C=US"]
    # Only the root is self-issued: a verifier takes nothing else as an anchor.
    assert [c.issuer == c.subject for c in certificates] == [True, False, False]


def test_same_file_same_thumbprints_within_a_day():
    fixed = datetime.datetime(2026, 5, 4, 9, 30, tzinfo=datetime.timezone.utc)
    later = fixed + datetime.timedelta(hours=5)
    first = load("mixed", clock=lambda: fixed)
    second = load("mixed", clock=lambda: later)

    def thumbprints(fleet):
        return [list(server.certificates) for server in fleet.servers.values()]

    assert thumbprints(first) == thumbprints(second)


def test_shared_certificate_id_is_one_pfx_everywhere():
    fleet = load("healthy")
    thumbprints = {name: {c.thumbprint for c in s.certificates.values() if c.source == "public"}
                   for name, s in fleet.servers.items()}
    assert len(set.union(*thumbprints.values())) == 1
    own = {s.internal_transport_thumbprint for s in fleet.servers.values()}
    assert len(own) == 3  # every server has its own self-signed certificate


def test_fixed_clock_drives_the_servers():
    fixed = datetime.datetime(2026, 5, 4, 9, 30, tzinfo=datetime.timezone.utc)
    fleet = load("healthy", clock=lambda: fixed)
    host = fleet.servers["EX01"].handle_request(request(call("Get-Queue", properties=["Identity"])))
    assert host["calls"][0]["ok"]
    assert fleet.servers["EX01"].now() == fixed


@pytest.mark.parametrize(
    "data, message",
    [
        ({"servers": []}, "at least one server"),
        ({"servers": [{"name": "EX01"}, {"name": "ex01"}]}, "duplicate"),
        ({"servers": [{"name": "EX01", "version": "2007"}]}, "version"),
        ({"servers": [{"name": "EX01", "locale": "fr"}]}, "locale"),
        ({"servers": [{"name": "EX01", "enable_behavior": "sometimes"}]}, "enable_behavior"),
        ({"servers": [{"name": "EX01", "role": "hub"}]}, "role"),
        ({"servers": [{"name": "EX01", "certificates": [{"id": "nope"}]}]}, "unknown certificate id"),
        ({"certificates": {"c": {"subject": "CN=x", "issuer": "ghost_ca"}},
          "servers": [{"name": "EX01", "certificates": ["c"]}]}, "unknown issuer"),
        ({"certificates": {"c": {"subject": "CN=x", "not_after": "someday"}},
          "servers": [{"name": "EX01", "certificates": ["c"]}]}, "not a date"),
        ({"certificates": {"c": {"subject": "CN=x"}},
          "servers": [{"name": "EX01", "certificates": [{"id": "c", "services": "WWW"}]}]}, "unknown service"),
        ({"authorities": {"a": {"subject": "CN=a", "issuer": "b"}, "b": {"subject": "CN=b", "issuer": "a"}},
          "servers": [{"name": "EX01"}]}, "cycle"),
        ({"organization": {"send_connectors": [{"name": "x", "source_servers": ["EX09"]}]},
          "servers": [{"name": "EX01"}]}, "unknown source servers"),
        ({"servers": [{"name": "EX01", "intermediates": ["nope"]}]}, "unknown authority"),
    ],
)
def test_fleet_errors_name_the_place(data, message):
    with pytest.raises(FleetError, match=message):
        Fleet.from_dict(data)


def test_inline_certificates_and_overrides():
    fleet = Fleet.from_dict({
        "servers": [{
            "name": "EX01",
            "self_signed": {"not_before": "-1000d", "hash": "sha1"},
            "certificates": [{"subject": "CN=mail.contoso.com", "issuer": "public_ca", "sans": ["mail.contoso.com"],
                              "services": "SMTP", "status": "Revoked", "root_ca_type": "Unknown",
                              "key": "ec256", "friendly_name": "inline"}],
            "receive_connectors": {"Default Frontend EX01": {"fqdn": "mail.contoso.com", "require_tls": True}},
            "events": [{"id": 1, "provider": "Other", "level": "Warning", "message": "hello", "age": "1h"}],
        }],
    })
    server = fleet.servers["EX01"]
    inline = [c for c in server.certificates.values() if c.friendly_name == "inline"][0]
    assert server.exchange_opinion(inline) == ("Revoked", "Unknown")
    assert inline.issued.cert.public_key().key_size == 256
    own = server.certificates[server.internal_transport_thumbprint]
    assert own.issued.cert.signature_hash_algorithm.name == "sha1"
    assert server.receive_connectors[2].fqdn == "mail.contoso.com" and server.receive_connectors[2].require_tls
    assert server.events[0].provider == "Other" and server.events[0].time < server.now()


def test_generator_is_deterministic_and_mostly_healthy():
    first = generate.generate_fleet(200, seed=7)
    assert first == generate.generate_fleet(200, seed=7)
    assert first != generate.generate_fleet(200, seed=8)
    assert len(first["servers"]) == 200
    fleet = Fleet.from_dict(first)
    delivered = sum(1 for s in fleet.servers.values() if s.mail_flow.get("delivered"))
    assert delivered > 0.7 * 200
    assert any(s.is_edge for s in fleet.servers.values())
    assert any(s.mail_flow.get("gateway") and s.mail_flow["gateway"]["reason"] == "UntrustedRoot"
               for s in fleet.servers.values())


def test_generator_cli_output_loads(capsys, tmp_path):
    assert generate.main(["12", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Generated by: python -m tests.lab.exchange.generate 12")
    path = tmp_path / "fleet.yml"
    path.write_text(text, encoding="utf-8")
    assert len(Fleet.load(str(path)).servers) == 12
    assert yaml.safe_load(io.StringIO(text))["servers"][0]["name"] == "EX01"


def test_generated_500_servers_load_fast():
    data = generate.generate_fleet(500)
    started = time.perf_counter()
    fleet = Fleet.from_dict(data)
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    fleet.status()
    status = time.perf_counter() - started
    print("500 servers: load %.2fs, status %.2fs" % (loaded, status))
    assert len(fleet.servers) == 500
    assert loaded < 30  # generous: shared CI machines; typically 1-3 s

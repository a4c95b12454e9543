"""certificate_info through the real winrm connection plugin and pywinrm to the lab, on every fleet.

The expected verdicts restate what each fleet file was built to show (tests/lab/fleets/README.md):
per server, the certificates other than the self-signed internal transport and Auth certificates,
by friendly name, with the reason codes of their verdict toward Exchange Online ([] = trusted).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.lab.testing import REPO_ROOT, run_ansible, running_lab

# The whole module is the integration suite's core (`make matrix`).
pytestmark = pytest.mark.matrix

FLEETS = os.path.join(REPO_ROOT, "tests", "lab", "fleets")

PUBLIC = "Contoso public 2026"
INTERNAL = "Contoso internal mail (AD CS)"
EXPECTED = {
    "healthy": {server: {PUBLIC: []} for server in ("ex01", "ex02", "ex03")},
    "kb2888788": {server: {PUBLIC: [], INTERNAL: ["unknown_root"]} for server in ("ex01", "ex02")},
    "stale_tls_name": {"ex01": {PUBLIC: []}, "ex02": {"Contoso public 2025": ["expired"], PUBLIC: []}},
    "only_untrusted": {"ex01": {INTERNAL: ["unknown_root"]},
                       "ex02": {"mail.contoso.com (self-signed)": ["self_signed", "unknown_root"]}},
    "expiring": {"ex01": {"Contoso public 2025": []}, "ex02": {"Contoso public 2025 (SHA-1)": ["weak_signature"]}},
    # EDGE02 lacks the public intermediate (the lab's bundle lists it, so that is told from an unknown root).
    "edge": {"ex01": {PUBLIC: []}, "edge01": {PUBLIC: []}, "edge02": {PUBLIC: ["incomplete_chain"]}},
    "localized": {"exde01": {"Müller öffentlich 2026": [], "Müller intern (AD CS)": ["unknown_root"]},
                  "excz01": {"Česká pošta veřejný 2026": [], "Česká pošta interní (AD CS)": ["unknown_root"]}},
    "mixed": {
        "ex01": {PUBLIC: []}, "ex02": {PUBLIC: []},
        "ex03": {PUBLIC: [], INTERNAL: ["unknown_root"]}, "ex04": {PUBLIC: [], INTERNAL: ["unknown_root"]},
        "ex05": {"Contoso public 2025": []}, "ex06": {INTERNAL: ["unknown_root"]},
        "ex07": {"Contoso public 2027": []}, "ex08": {PUBLIC: [], INTERNAL: ["unknown_root"]},
        "ex09": {PUBLIC: ["incomplete_chain"]}, "ex10": {PUBLIC: []}, "edge01": {PUBLIC: []},
    },
}


def gather(lab, tmp_path, *extra_args):
    tree = tmp_path / "tree"
    args = ["exchange", "-m", "hybridmail.exchange.certificate_info",
            "-a", "trust_bundle={{ hybridmail_trust_bundle }}" + "".join(" " + a for a in extra_args), "-t", str(tree)]
    completed = run_ansible(args, lab.inventory)
    results = {path.name: json.loads(path.read_text(encoding="utf-8")) for path in tree.iterdir()}
    return completed, results


@pytest.mark.parametrize("fleet", sorted(EXPECTED))
def test_every_certificate_gets_the_verdict_the_fleet_was_built_for(fleet, tmp_path):
    with running_lab(os.path.join(FLEETS, fleet + ".yml"), tmp_path=tmp_path) as lab:
        completed, results = gather(lab, tmp_path)
        status = lab.status()["servers"]
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert sorted(results) == sorted(EXPECTED[fleet])
    for host, result in results.items():
        assert result["changed"] is False
        others = [c for c in result["certificates"] if not (c["is_internal_transport"] or c["is_auth_certificate"])]
        verdicts = {c["friendly_name"]: [r["code"] for r in c["verdict"]["reasons"]] for c in others}
        assert verdicts == EXPECTED[fleet][host], host
        internal_transport = [c for c in result["certificates"] if c["is_internal_transport"]]
        assert len(internal_transport) == 1 and internal_transport[0]["is_self_signed"]
        assert not any(c["faces_exchange_online"] for c in result["certificates"] if c["is_auth_certificate"])
    # One WinRM command per host, and nothing changed on any server.
    for server in status.values():
        assert server["winrm"]["requests"]["Command"] == 1
        assert server["mutations"] == []


def test_kb2888788_identifies_the_untrusted_smtp_certificate_facing_exchange_online(tmp_path):
    with running_lab(os.path.join(FLEETS, "kb2888788.yml"), tmp_path=tmp_path) as lab:
        results = gather(lab, tmp_path)[1]
    for result in results.values():
        culprits = [c for c in result["certificates"]
                    if c["faces_exchange_online"] and "SMTP" in c["services"] and not c["verdict"]["trusted"]
                    and not c["is_internal_transport"]]
        assert [c["friendly_name"] for c in culprits] == [INTERNAL]
        assert culprits[0]["hybrid_names"] == ["mail.contoso.com"]
        assert any(e["untrusted_root"] for e in result["events"])
        assert result["exchange_online_queue"]["status"] == "Retry"


def test_thumbprint_filter_that_matches_nothing_fails_clearly(tmp_path):
    with running_lab(os.path.join(FLEETS, "healthy.yml"), tmp_path=tmp_path) as lab:
        completed, results = gather(lab, tmp_path, "thumbprints=" + "0" * 40)
    assert completed.returncode != 0
    for host, result in results.items():
        assert result["msg"] == "%s: none of the requested thumbprints is on the server: %s" % (host, "0" * 40)


def test_bad_option_fails_before_any_round_trip(tmp_path):
    with running_lab(os.path.join(FLEETS, "healthy.yml"), tmp_path=tmp_path) as lab:
        completed, results = gather(lab, tmp_path, "event_lookback_days=-1")
        commands = [s["winrm"]["requests"]["Command"] for s in lab.status()["servers"].values()]
    assert completed.returncode != 0
    assert all("event_lookback_days must be between 0 and 365, got -1" in r["msg"] for r in results.values())
    assert commands == [0] * len(commands)

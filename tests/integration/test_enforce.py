"""smtp_certificate and send_connector_tls through ansible-playbook, the real winrm plugin and the lab.

Every fleet used here has one server on each reading of Enable-ExchangeCertificate (EX01 additive, as
documented; EX02 replace, as KB 2888788 assumes), so each scenario runs under both. What counts is
what the lab reports: mail flow to Exchange Online, its Event 2004, its mutation log, its WinRM
counters; the modules' own results are checked against it.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tests.lab.testing import REPO_ROOT, run_ansible, running_lab

FLEETS = os.path.join(REPO_ROOT, "tests", "lab", "fleets")
SERVERS = ("EX01", "EX02")
SEND_CONNECTOR = "Outbound to Office 365"

# A trusted certificate that is not enabled for SMTP although the connectors name it (UnknownCredentials):
# smtp_certificate must enable it with -Force and restore the internal transport certificate.
TRUSTED_WITHOUT_SMTP = {
    "organization": {"name": "Contoso Ltd", "domain": "contoso.com", "hybrid": {"tls_certificate": "public"}},
    "certificates": {"public": {"subject": "CN=mail.contoso.com, O=Contoso Ltd, C=US", "issuer": "public_ca",
                                "sans": ["mail.contoso.com"], "friendly_name": "Contoso public 2026"}},
    "servers": [{"name": "EX01", "enable_behavior": "additive", "certificates": [{"id": "public", "services": "IIS"}]},
                {"name": "EX02", "enable_behavior": "replace", "certificates": [{"id": "public", "services": "IIS"}]}],
}


def play(lab, tmp_path, module: str, args: dict | None = None, *, check=False, diff=False, limit=None):
    """Run one task of module on the fleet with ansible-playbook; (completed process, result per server)."""
    playbook = tmp_path / ("%s.yml" % module)
    playbook.write_text(yaml.safe_dump([{
        "hosts": "exchange",
        "gather_facts": False,
        # The action group lets one module_defaults entry configure every module of the collection.
        "module_defaults": {"group/hybridmail.exchange.exchange": {"trust_bundle": "{{ hybridmail_trust_bundle }}"}},
        "tasks": [{"name": module, "hybridmail.exchange." + module: args or {}}],
    }]), encoding="utf-8")
    tree = tmp_path / "tree"
    for old in tree.glob("*") if tree.exists() else ():
        old.unlink()
    options = [str(playbook)] + (["--check"] if check else []) + (["--diff"] if diff else []) + (["--limit", limit] if limit else [])
    lab.reset_counters()
    completed = run_ansible(options, lab.inventory, program="ansible-playbook",
                            env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree", "ANSIBLE_CALLBACK_TREE_DIR": str(tree)})
    results = {path.name.upper(): json.loads(path.read_text(encoding="utf-8")) for path in tree.iterdir()}
    return completed, results


def status(lab) -> dict:
    return lab.status()["servers"]


def untrusted_root_events(server: dict) -> int:
    return sum(1 for event in server["events"] if event["id"] == 2004 and "UntrustedRoot" in event["message"])


def assert_round_trips(lab, hosts, commands: int):
    """The module run cost exactly `commands` WinRM commands per host (the lab counts them)."""
    for name in hosts:
        assert status(lab)[name]["winrm"]["requests"]["Command"] == commands, name


def protected(server: dict) -> dict:
    """The internal transport and Auth certificates as the lab holds them."""
    certificates = {c["thumbprint"]: c for c in server["certificates"]}
    auth = [c for c in server["certificates"] if c["source"] == "exchange_auth"]
    return {"internal_transport": server["internal_transport_certificate"],
            "internal_transport_services": certificates[server["internal_transport_certificate"]]["services"],
            "auth": [(c["thumbprint"], c["services"]) for c in auth]}


def mutated_thumbprints(server: dict) -> set:
    return {m["parameters"].get("Thumbprint") for m in server["mutations"]} - {None}


def by_source(result: dict, lab_server: dict, source: str) -> dict:
    thumbprint = next(c["thumbprint"] for c in lab_server["certificates"] if c["source"] == source)
    return next(c for c in result["certificates"] if c["thumbprint"] == thumbprint)


# ---------------------------------------------------------------------------------------------
# KB 2888788
# ---------------------------------------------------------------------------------------------


# The send connector is organisation-wide: once one server has pinned it, the untrusted certificate
# of the other is already mitigated and is left alone. So each behaviour gets its own lab, in which
# only its server is remediated.
@pytest.fixture(scope="module", params=["EX01", "EX02"])
def kb_runs(request, tmp_path_factory):
    """On a fresh kb2888788 lab: check mode on both servers, then one server remediated, then again."""
    name = request.param
    tmp_path = tmp_path_factory.mktemp("kb-" + name)
    with running_lab(os.path.join(FLEETS, "kb2888788.yml"), tmp_path=tmp_path) as lab:
        runs = {"before": status(lab)}
        runs["check"] = play(lab, tmp_path, "smtp_certificate", check=True, diff=True)
        runs["check_status"] = status(lab)
        runs["run"] = play(lab, tmp_path, "smtp_certificate", limit=name.lower())
        runs["run_status"] = status(lab)
        runs["again"] = play(lab, tmp_path, "smtp_certificate", limit=name.lower())
        runs["again_status"] = status(lab)
    return name, runs


@pytest.mark.matrix
def test_check_mode_returns_the_plan_and_changes_nothing(kb_runs):
    runs = kb_runs[1]
    completed, results = runs["check"]
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for name in SERVERS:
        result = results[name]
        assert result["changed"] is True
        assert [step["action"] for step in result["plan"]] == ["drop_smtp", "pin_connector"]
        assert {step["status"] for step in result["steps"]} == {"planned"}
        assert runs["check_status"][name]["mutations"] == []
        assert runs["check_status"][name]["winrm"]["requests"]["Command"] == 1
    # Diff mode shows the connector as the plan means it (callbacks keep the diff off the result files).
    added = [line for line in completed.stdout.splitlines() if line.startswith("+") and SEND_CONNECTOR in line]
    assert added and all(results["EX01"]["plan"][1]["tls_certificate_name"] in line for line in added)


@pytest.mark.matrix
def test_kb2888788_restores_mail_flow_under_both_enable_behaviours(kb_runs):
    name, runs = kb_runs
    completed, results = runs["run"]
    assert completed.returncode == 0, completed.stdout + completed.stderr
    after = runs["run_status"][name]
    result = results[name]
    assert result["changed"] is True
    assert [step["status"] for step in result["steps"]] == ["applied", "applied"]
    # EX01 keeps SMTP on the internal-CA certificate (additive), EX02 loses it (replace).
    expected = {"additive": "mitigated", "replace": "compliant"}[after["enable_behavior"]]
    assert by_source(result, after, "internal")["state"] == expected
    assert ("SMTP" in by_source(result, after, "internal")["services"]) is (expected == "mitigated")
    assert after["mail_flow"]["delivered"] is True
    assert after["mail_flow"]["outbound_certificate"] == by_source(result, after, "public")["thumbprint"]
    # No new Event 2004 once the run is over (the check-mode status above still saw the incident).
    assert untrusted_root_events(after) == untrusted_root_events(runs["check_status"][name])
    assert after["winrm"]["requests"]["Command"] == 2


@pytest.mark.matrix
def test_internal_transport_and_auth_certificates_are_untouched(kb_runs):
    runs = kb_runs[1]
    for name in SERVERS:
        before, after = runs["before"][name], runs["again_status"][name]
        assert protected(after) == protected(before)
        untouchable = {protected(before)["internal_transport"]} | {auth[0] for auth in protected(before)["auth"]}
        assert not mutated_thumbprints(after) & untouchable


@pytest.mark.matrix
def test_a_second_run_changes_nothing_in_one_round_trip(kb_runs):
    name, runs = kb_runs
    completed, results = runs["again"]
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert results[name]["changed"] is False and results[name]["plan"] == []
    assert runs["again_status"][name]["winrm"]["requests"]["Command"] == 1
    assert runs["again_status"][name]["mutations"] == runs["run_status"][name]["mutations"]


def test_both_servers_at_once_pin_the_shared_send_connector_without_tripping_each_other(tmp_path):
    # Whichever server pins the organisation-wide connector first mitigates the other's certificate;
    # if the other had planned already, its guard must not trip over the same change.
    with running_lab(os.path.join(FLEETS, "kb2888788.yml"), tmp_path=tmp_path) as lab:
        completed, results = play(lab, tmp_path, "smtp_certificate")
        servers = status(lab)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for name in SERVERS:
        assert servers[name]["mail_flow"]["delivered"] is True
        assert {c["state"] for c in results[name]["certificates"]} <= {"compliant", "mitigated", "exempt", "out_of_scope"}
        assert servers[name]["winrm"]["requests"]["Command"] <= 2


def test_a_fault_between_two_mutations_names_the_applied_steps_and_a_rerun_converges(tmp_path):
    with running_lab(os.path.join(FLEETS, "kb2888788.yml"), tmp_path=tmp_path) as lab:
        lab.fault("EX02", "cmdlet", cmdlet="Set-SendConnector", times=1)
        completed, results = play(lab, tmp_path, "smtp_certificate", limit="ex02")
        failed = status(lab)["EX02"]
        assert completed.returncode != 0
        message = results["EX02"]["msg"]
        assert message.startswith("ex02: step 2 of 2 (set TlsCertificateName of send connector '%s'" % SEND_CONNECTOR)
        assert "Applied: step 1 (drop SMTP from" in message and "ADTransientException" in message
        assert [m["result"] for m in failed["mutations"]] == ["ok", "error"]
        assert_round_trips(lab, ["EX02"], 2)

        completed, results = play(lab, tmp_path, "smtp_certificate", limit="ex02")
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert status(lab)["EX02"]["mail_flow"]["delivered"] is True
        completed, results = play(lab, tmp_path, "smtp_certificate", limit="ex02")
        assert results["EX02"]["changed"] is False


def test_a_lost_answer_to_the_mutating_round_trip_is_reported_and_the_next_run_sees_what_happened(tmp_path):
    with running_lab(os.path.join(FLEETS, "kb2888788.yml"), tmp_path=tmp_path) as lab:
        # The audit answers; the mutating batch runs on the server but its result line is cut.
        lab.fault("EX02", "truncate", after=1, times=1)
        completed, results = play(lab, tmp_path, "smtp_certificate", limit="ex02")
        assert completed.returncode != 0
        assert "so its outcome is unknown; these steps may have been applied: step 1 (drop SMTP from " in results["EX02"]["msg"]
        # Ansible needs a bool: changed is true, and changed_unknown says that it is not known (issue 16).
        assert (results["EX02"]["changed"], results["EX02"]["changed_unknown"], len(results["EX02"]["may_have_applied"])) == (True, True, 2)
        assert [step["status"] for step in results["EX02"]["steps"]] == ["unknown", "unknown"]
        assert [m["result"] for m in status(lab)["EX02"]["mutations"]] == ["ok", "ok"]

        completed, results = play(lab, tmp_path, "smtp_certificate", limit="ex02")
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert results["EX02"]["changed"] is False and results["EX02"]["plan"] == []
        assert status(lab)["EX02"]["mail_flow"]["delivered"] is True


# ---------------------------------------------------------------------------------------------
# Other fleets
# ---------------------------------------------------------------------------------------------


def test_stale_tls_name_is_repointed_and_mail_flows(tmp_path):
    with running_lab(os.path.join(FLEETS, "stale_tls_name.yml"), tmp_path=tmp_path) as lab:
        assert not any(server["mail_flow"]["delivered"] for server in status(lab).values())
        completed, results = play(lab, tmp_path, "send_connector_tls", {"receive_connectors": True})
        servers = status(lab)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert_round_trips(lab, SERVERS, 2)
        renewed = next(c for c in servers["EX01"]["certificates"] if c["source"] == "renewed")
        for name in SERVERS:
            assert servers[name]["mail_flow"]["delivered"] is True
            assert servers[name]["mail_flow"]["outbound_certificate"] == renewed["thumbprint"]
            assert {c["state"] for c in results[name]["connectors"]} == {"pinned"}
            assert any("Hybrid Configuration Wizard" in note for note in results[name]["notes"])
        assert "renewed" not in servers["EX01"]["send_connectors"][0]["TlsCertificateName"]  # the name, not an id
        assert servers["EX01"]["send_connectors"][0]["TlsCertificateName"].endswith(renewed["subject"])

        completed, results = play(lab, tmp_path, "send_connector_tls", {"receive_connectors": True})
        assert completed.returncode == 0 and not any(result["changed"] for result in results.values())
        assert_round_trips(lab, SERVERS, 1)


@pytest.mark.parametrize("module", ["smtp_certificate", "send_connector_tls"])
def test_only_untrusted_fails_and_changes_nothing(tmp_path, module):
    with running_lab(os.path.join(FLEETS, "only_untrusted.yml"), tmp_path=tmp_path) as lab:
        completed, results = play(lab, tmp_path, module)
        servers = status(lab)
        assert_round_trips(lab, SERVERS, 1)
    assert completed.returncode != 0
    for name in SERVERS:
        assert results[name]["msg"].startswith("%s: mail.contoso.com" % name.lower())
        assert "Install a certificate for mail.contoso.com issued by a CA in the Microsoft Trusted Root Program" in results[name]["msg"]
        assert servers[name]["mutations"] == []


def test_enabling_smtp_keeps_the_internal_transport_certificate_under_both_behaviours(tmp_path):
    fleet = tmp_path / "trusted_without_smtp.yml"
    fleet.write_text(yaml.safe_dump(TRUSTED_WITHOUT_SMTP), encoding="utf-8")
    with running_lab(str(fleet), tmp_path=tmp_path) as lab:
        before = status(lab)
        completed, results = play(lab, tmp_path, "smtp_certificate", diff=True)
        after = status(lab)
        assert_round_trips(lab, SERVERS, 2)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for name in SERVERS:
        assert [step["action"] for step in results[name]["steps"]] == ["enable_smtp", "restore_internal_transport"]
        assert after[name]["internal_transport_certificate"] == before[name]["internal_transport_certificate"]
        assert protected(after[name]) == protected(before[name])
        assert after[name]["web_certificate"] == before[name]["web_certificate"]
        assert after[name]["mail_flow"]["delivered"] is True and after[name]["internal_mail_flow"]["ok"] is True

"""playbooks/renew.yml and exchange_certificate through ansible-playbook, the real winrm plugin and the lab.

What counts is what the lab reports (control API): mail flow to Exchange Online per server, the
certificate transport selects, the internal transport certificate, the IIS binding, the hybrid
configuration, the mutation log and the WinRM counters.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.playbook_runs import run_role
from tests.lab.exchange.fleet import Fleet
from tests.lab.testing import REPO_ROOT, ansible_env, run_ansible, running_lab

FLEETS = os.path.join(REPO_ROOT, "tests", "lab", "fleets")
RENEW = os.path.join(REPO_ROOT, "playbooks", "renew.yml")
PASSWORD = "Renew-%s!" % secrets.token_hex(6)
_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)")

# A public certificate for only_untrusted.yml (which has none): defined, installed nowhere.
NEW_PUBLIC = {"subject": "CN=mail.contoso.com, O=Contoso Ltd, C=US", "issuer": "public_ca",
              "sans": ["mail.contoso.com", "autodiscover.contoso.com"], "not_before": "-1d", "not_after": "+199d",
              "friendly_name": "Contoso public 2026"}


def fleet_file(tmp_path: Path, name: str, extra_certificates: dict | None = None) -> str:
    with open(os.path.join(FLEETS, name + ".yml"), encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    data.setdefault("certificates", {}).update(copy.deepcopy(extra_certificates or {}))
    path = tmp_path / ("%s.yml" % name)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(path)


def write_pfx(tmp_path: Path, fleet_path: str, cert_id: str, password=PASSWORD, **options) -> str:
    path = tmp_path / ("%s.pfx" % cert_id)
    path.write_bytes(Fleet.load(fleet_path).pfx(cert_id, password, **options))
    return str(path)


def renew(lab, pfx_path: str, *extra: str, hosts=None, names=("mail.contoso.com",), password=PASSWORD, retire=False,
          env=None, services=None) -> subprocess.CompletedProcess:
    certificate = {"pfx_path": pfx_path, "pfx_password": password, "names": list(names), "retire_superseded": retire}
    if services:
        certificate["services"] = list(services)
    if hosts:
        certificate["hosts"] = hosts
    variables = {"hybrid_readiness_certificate": certificate}
    return run_ansible([RENEW, "-e", json.dumps(variables), "-e", "hybrid_readiness_trust_bundle={{ hybridmail_trust_bundle }}",
                        *extra], lab.inventory, program="ansible-playbook", env=env)


def recap(completed) -> dict:
    found = {}
    for line in completed.stdout.split("PLAY RECAP", 1)[-1].splitlines():
        match = _RECAP.match(line.strip())
        if match:
            found[match["host"]] = {k: int(v) for k, v in match.groupdict().items() if k != "host"}
    return found


def lab_dir(tmp_path: Path) -> Path:
    path = tmp_path / "lab"
    path.mkdir(exist_ok=True)
    return path


def servers(lab) -> dict:
    return lab.status()["servers"]


def untouched_state(status: dict) -> dict:
    return {name: (s["internal_transport_certificate"], s["web_certificate"], s["backend_certificate"]) for name, s in status.items()}


def assert_delivering_with(status: dict, names, thumbprint: str):
    for name in names:
        flow = status[name]["mail_flow"]
        assert flow["delivered"] is True, (name, flow)
        assert flow["outbound_certificate"] == thumbprint, (name, flow)
        assert status[name]["internal_mail_flow"]["ok"], (name, status[name]["internal_mail_flow"])


def test_renewal_rolls_out_pins_and_converges(tmp_path):
    fleet_path = os.path.join(FLEETS, "renewal.yml")
    fleet = Fleet.load(fleet_path)
    renewed = fleet.issued("renewed")
    pfx = write_pfx(tmp_path, fleet_path, "renewed")
    with running_lab(fleet_path, tmp_path=lab_dir(tmp_path)) as lab:
        before = servers(lab)

        # --check --diff shows every import, bind and pin, and changes nothing.
        lab.reset_counters()
        checked = renew(lab, pfx, "--check", "--diff", "-v")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        for text in ("import certificate %s" % renewed.thumbprint, "enable SMTP on %s" % renewed.thumbprint,
                     "restore ", "set TlsCertificateName of send connector 'Outbound to Office 365'",
                     "set TlsCertificateName of receive connector 'EX01\\\\Default Frontend EX01'",
                     "set Get-HybridConfiguration's TlsCertificateName"):
            assert text in checked.stdout, text
        assert '"hybrid_tls_certificate_name": "<I>CN=Hybridmail Lab Public TLS CA 2026' in checked.stdout
        after_check = servers(lab)
        assert all(not s["mutations"] for s in after_check.values())
        assert all(s["winrm"]["commands"]["runner"] >= 1 for s in after_check.values())

        completed = renew(lab, pfx)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        status = servers(lab)
        assert_delivering_with(status, ("EX01", "EX02"), renewed.thumbprint)
        assert untouched_state(status) == untouched_state(before)
        name = "<I>%s<S>%s" % (renewed.issuer, renewed.subject)
        assert status["EX01"]["hybrid_configuration"]["TlsCertificateName"] == name
        assert [c["TlsCertificateName"] for c in status["EX01"]["send_connectors"]] == [name]
        for server in ("EX01", "EX02"):
            front = next(c for c in status[server]["receive_connectors"] if c["Name"] == "Default Frontend %s" % server)
            assert front["TlsCertificateName"] == name
            assert next(c for c in status[server]["certificates"] if c["thumbprint"] == renewed.thumbprint)["chain_status"] == []
        hybrid_sets = [m for s in status.values() for m in s["mutations"] if m["cmdlet"] == "Set-HybridConfiguration"]
        assert len(hybrid_sets) == 1  # once per organisation
        # Per server: at most two round trips per module task (audit + one mutating).
        for server in ("EX01", "EX02"):
            assert status[server]["winrm"]["commands"]["runner"] <= 2 * 3 + 2  # check run (3 tasks) + this run's (3 tasks, 2 mutating)

        # Fleet consistency: both hybrid servers now present the same issuer and subject (HM501 clear).
        audit = run_role(lab.inventory, "audit", tmp_path / "audit")
        assert "HM501" not in [finding["id"] for finding in audit.report["fleet"]["findings"]], audit.report["fleet"]

        again = renew(lab, pfx, "--diff")
        assert again.returncode == 0, again.stdout + again.stderr
        assert all(counts["changed"] == 0 for counts in recap(again).values()), again.stdout

        retired = renew(lab, pfx, retire=True)
        assert retired.returncode == 0, retired.stdout + retired.stderr
        # The old certificate has another issuer: nothing supersedes it, nothing is removed.
        assert all(m["cmdlet"] != "Remove-ExchangeCertificate" for s in servers(lab).values() for m in s["mutations"])


def test_only_untrusted_gets_a_trusted_certificate_and_untrusted_ones_lose_smtp(tmp_path):
    fleet_path = fleet_file(tmp_path, "only_untrusted", {"new_public": NEW_PUBLIC})
    new = Fleet.load(fleet_path).issued("new_public")
    pfx = write_pfx(tmp_path, fleet_path, "new_public")
    with running_lab(fleet_path, tmp_path=lab_dir(tmp_path)) as lab:
        before = servers(lab)
        assert not any(s["mail_flow"]["delivered"] for s in before.values())
        completed = renew(lab, pfx)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        status = servers(lab)
        assert_delivering_with(status, ("EX01", "EX02"), new.thumbprint)
        assert untouched_state(status) == untouched_state(before)
        # The untrusted certificates for mail.contoso.com were asked to lose SMTP (their other services kept);
        # both servers are additive, so Exchange may keep it, and the pins make that harmless.
        for server, source in (("EX01", "internal"), ("EX02", "self_signed_mail")):
            thumbprint = next(c["thumbprint"] for c in status[server]["certificates"] if c["source"] == source)
            drops = [m for m in status[server]["mutations"] if m["cmdlet"] == "Enable-ExchangeCertificate"
                     and m["parameters"]["Thumbprint"] == thumbprint]
            assert drops and "SMTP" not in drops[0]["parameters"]["Services"], status[server]["mutations"]
        second = renew(lab, pfx)
        assert second.returncode == 0, second.stdout + second.stderr
        assert all(counts["changed"] == 0 for counts in recap(second).values()), second.stdout


def test_mixed_ex07_gets_the_pinned_certificate_and_nothing_else_changes(tmp_path):
    fleet_path = os.path.join(FLEETS, "mixed.yml")
    public = Fleet.load(fleet_path).issued("public")
    pfx = write_pfx(tmp_path, fleet_path, "public")
    with running_lab(fleet_path, tmp_path=lab_dir(tmp_path)) as lab:
        before = servers(lab)
        assert before["EX07"]["mail_flow"]["last_error"].startswith("454 4.7.5")
        completed = renew(lab, pfx, hosts="ex07")
        assert completed.returncode == 0, completed.stdout + completed.stderr
        status = servers(lab)
        assert_delivering_with(status, ("EX07",), public.thumbprint)
        assert untouched_state(status) == untouched_state(before)
        assert all(not s["mutations"] for name, s in status.items() if name != "EX07")
        second = renew(lab, pfx, hosts="ex07")
        assert second.returncode == 0 and recap(second)["ex07"]["changed"] == 0, second.stdout


@pytest.mark.parametrize("case, reason", [
    ("wrong_password", "wrong pfx_password"),
    ("no_key", "no private key"),
    ("untrusted", "not trusted by the trust bundle"),
    ("expired", "expired"),
    ("names", "covers www.fabrikam.com, not mail.contoso.com"),
])
def test_a_bad_pfx_is_refused_before_any_round_trip(tmp_path, case, reason):
    fleet_path = os.path.join(FLEETS, "renewal.yml")
    cert_id = {"untrusted": "renewed_internal", "expired": "renewed_expired", "names": "other_name"}.get(case, "renewed")
    pfx = write_pfx(tmp_path, fleet_path, cert_id, include_key=case != "no_key")
    with running_lab(fleet_path, tmp_path=lab_dir(tmp_path)) as lab:
        lab.reset_counters()
        completed = renew(lab, pfx, password="not-the-password" if case == "wrong_password" else PASSWORD)
        assert completed.returncode != 0
        fatal = [line for line in completed.stdout.splitlines() if line.startswith("fatal: [ex01]")]
        assert fatal, completed.stdout
        assert "ex01: the PFX" in fatal[0] and reason in fatal[0] and "Nothing was sent to the server" in fatal[0], fatal[0]
        for name, server in servers(lab).items():
            assert not any(server["winrm"]["requests"].values()), (name, server["winrm"])
            assert not server["mutations"]
        assert "ex02" not in recap(completed) or recap(completed)["ex02"]["ok"] == 0


def test_the_pfx_password_appears_nowhere(tmp_path):
    """-vvv output, per-task results (tree callback), the Ansible log, the lab's log and status: no password,
    and the PFX travels vault-encrypted on the controller (decrypted by the action plugin's loader)."""
    fleet_path = os.path.join(FLEETS, "renewal.yml")
    pfx = Path(write_pfx(tmp_path, fleet_path, "renewed"))
    pfx_b64_head = __import__("base64").b64encode(pfx.read_bytes()).decode()[:60]
    vault_password = "vault-%s" % secrets.token_hex(8)
    vault_file = tmp_path / "vault-pass"
    vault_file.write_text(vault_password + "\n", encoding="utf-8")
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-vault"), "encrypt", "--vault-password-file",
                    str(vault_file), str(pfx)], env=ansible_env(), check=True, capture_output=True)
    assert pfx.read_bytes().startswith(b"$ANSIBLE_VAULT")
    tree, log = tmp_path / "tree", tmp_path / "ansible.log"
    env = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree", "ANSIBLE_CALLBACK_TREE_DIR": str(tree),
           "ANSIBLE_LOG_PATH": str(log), "ANSIBLE_VAULT_PASSWORD_FILE": str(vault_file)}
    with running_lab(fleet_path, tmp_path=lab_dir(tmp_path)) as lab:
        completed = renew(lab, str(pfx), "-vvv", env=env)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        wrong = renew(lab, str(pfx), "-vvv", password=PASSWORD + "x", env=env)  # an error path too
        assert wrong.returncode != 0
        status_text = json.dumps(lab.status())
        lab_log = lab.log()
        assert servers(lab)["EX01"]["mail_flow"]["outbound_certificate"] == Fleet.load(fleet_path).issued("renewed").thumbprint
    texts = {"-vvv output": completed.stdout + completed.stderr + wrong.stdout + wrong.stderr,
             "ansible.log": log.read_text(encoding="utf-8"), "lab log": lab_log, "lab status": status_text}
    texts.update({"result %s" % path.name: path.read_text(encoding="utf-8") for path in tree.iterdir()})
    for where, text in texts.items():
        assert PASSWORD not in text, where
        assert pfx_b64_head not in text, where


def test_a_failed_canary_stops_the_rollout_and_leaves_the_other_servers_as_they_were(tmp_path):
    fleet_path = os.path.join(FLEETS, "renewal.yml")
    old = Fleet.load(fleet_path).issued("public_2025")
    pfx = write_pfx(tmp_path, fleet_path, "renewed")
    with running_lab(fleet_path, tmp_path=lab_dir(tmp_path)) as lab:
        before = servers(lab)
        lab.reset_counters()
        lab.fault("EX01", "cmdlet", cmdlet="Import-ExchangeCertificate", times=1)
        completed = renew(lab, pfx)
        assert completed.returncode != 0
        fatal = [line for line in completed.stdout.splitlines() if line.startswith("fatal: [ex01]")]
        assert fatal and "import certificate" in fatal[0] and "ADTransientException" in fatal[0], completed.stdout
        status = servers(lab)
        # The canary's failed import stopped its batch: nothing after it ran there, and EX02 was never contacted.
        assert [m["cmdlet"] for m in status["EX01"]["mutations"]] == ["Import-ExchangeCertificate"]
        assert not any(status["EX02"]["winrm"]["requests"].values()) and not status["EX02"]["mutations"]
        assert untouched_state(status) == untouched_state(before)
        assert_delivering_with(status, ("EX01", "EX02"), old.thumbprint)
        assert "PLAY [Renew the hybrid certificate - pin" not in completed.stdout


def test_the_old_certificate_is_removed_only_once_nothing_references_it(tmp_path):
    fleet_path = os.path.join(FLEETS, "renewal.yml")
    fleet = Fleet.load(fleet_path)
    old, renewed = fleet.issued("public_2025"), fleet.issued("renewed")
    pfx = write_pfx(tmp_path, fleet_path, "renewed")
    absent = ["exchange", "-m", "hybridmail.exchange.exchange_certificate", "-a",
              "state=absent thumbprint=%s trust_bundle={{ hybridmail_trust_bundle }}" % old.thumbprint]
    with running_lab(fleet_path, tmp_path=lab_dir(tmp_path)) as lab:
        refused = run_ansible(absent, lab.inventory)
        assert refused.returncode != 0
        for text in ("ex01: certificate %s is not removed" % old.thumbprint, "send connector 'Outbound to Office 365'",
                     "Default Frontend EX01", "Get-HybridConfiguration", "bound to IIS"):
            assert text in refused.stdout, text
        assert all(not s["mutations"] for s in servers(lab).values())

        # Renewed with IIS too (the web certificate moves), the old one is referenced by nothing any more.
        completed = renew(lab, pfx, services=("SMTP", "IIS"))
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert all(s["web_certificate"] == renewed.thumbprint for s in servers(lab).values())
        removed = run_ansible(absent, lab.inventory)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        status = servers(lab)
        assert all(old.thumbprint not in [c["thumbprint"] for c in s["certificates"]] for s in status.values())
        assert_delivering_with(status, ("EX01", "EX02"), renewed.thumbprint)
        again = run_ansible(absent, lab.inventory)
        assert again.returncode == 0 and '"changed": true' not in again.stdout, again.stdout


def test_a_lost_answer_to_the_import_round_trip_is_failed_with_its_outcome_unknown(tmp_path):
    # The audit answers; the mutating round trip gets an HTTP 500 (after=1: the second WinRM command).
    # The host is reachable, the steps may have run: failed, changed unknown, never "unreachable" or "no change".
    fleet_path = os.path.join(FLEETS, "renewal.yml")
    pfx = write_pfx(tmp_path, fleet_path, "renewed")
    task = ["ex01", "-m", "hybridmail.exchange.exchange_certificate", "-a",
            json.dumps({"pfx_path": pfx, "pfx_password": PASSWORD, "names": ["mail.contoso.com"],
                        "trust_bundle": "{{ hybridmail_trust_bundle }}"})]
    with running_lab(fleet_path, tmp_path=lab_dir(tmp_path)) as lab:
        lab.fault("EX01", "http500", after=1, times=1)
        completed = run_ansible(task, lab.inventory)
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert "UNREACHABLE" not in output and "ex01 | FAILED" in output, output
    assert '"changed_unknown": true' in output and '"changed": true' in output
    assert "its outcome is unknown; these steps may have been applied: import certificate" in output
    assert PASSWORD not in output

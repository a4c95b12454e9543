"""Secrets never leave Ansible: not in module results, not in -vvv output, not in the reports.

The lab runs with a password made for this test; the inventory takes it from an Ansible Vault
encrypted variable, as README's real inventories do. Audit (with one server rejecting the login)
and enforce through the role's playbooks, and certificate_info and send_connector_tls ad hoc, all at
-vvv with the tree callback and a log file, under Basic over HTTP and NTLM (message encryption):
nothing they print or write holds the password, the vault password, or the Basic authorization token.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.playbook_runs import PLAYBOOKS, TRUST_BUNDLE
from tests.lab.__main__ import DEFAULT_USER
from tests.lab.testing import REPO_ROOT, ansible_env, run_ansible, running_lab

KB2888788 = os.path.join(REPO_ROOT, "tests", "lab", "fleets", "kb2888788.yml")


def vaulted_inventory(lab_inventory: str, directory: Path, password: str, vault_password_file: Path) -> str:
    """The lab's inventory with ansible_password taken from a vault-encrypted group variable."""
    with open(lab_inventory, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    group = document["all"]["children"]["exchange"]
    assert group["vars"]["ansible_password"] == password
    group["vars"]["ansible_password"] = "{{ vault_exchange_password }}"
    inventory = directory / "inventory.yml"
    inventory.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    encrypted = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-vault"), "encrypt_string", "--vault-password-file",
         str(vault_password_file), "--name", "vault_exchange_password", "--", password],
        env=ansible_env(), capture_output=True, text=True, check=True).stdout
    (directory / "group_vars").mkdir()
    (directory / "group_vars" / "exchange.yml").write_text("---\n" + encrypted, encoding="utf-8")
    return str(inventory)


def leaks(texts: dict, secret_values: dict) -> list[str]:
    """Every (where, which secret) pair where a secret value occurs."""
    return ["%s holds the %s" % (where, which) for where, text in texts.items()
            for which, value in secret_values.items() if value in text]


@pytest.mark.parametrize("auth", ["basic", "ntlm"])
def test_no_secret_in_results_verbose_output_or_reports(tmp_path, auth):
    password = "Hm-%s-Pw!" % secrets.token_hex(8)
    vault_password = "vault-%s" % secrets.token_hex(12)
    vault_file = tmp_path / "vault-password"
    vault_file.write_text(vault_password + "\n", encoding="utf-8")
    secret_values = {
        "lab password": password,
        "vault password": vault_password,
        "Basic authorization token": base64.b64encode(("%s:%s" % (DEFAULT_USER, password)).encode()).decode(),
    }
    outputs, results_dir = {}, tmp_path / "tree"
    env = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree", "ANSIBLE_CALLBACK_TREE_DIR": str(results_dir),
           "ANSIBLE_LOG_PATH": str(tmp_path / "ansible.log"), "ANSIBLE_VAULT_PASSWORD_FILE": str(vault_file)}

    (tmp_path / "lab").mkdir()
    with running_lab(KB2888788, tmp_path=tmp_path / "lab", auth=auth, password=password) as lab:
        inventory = vaulted_inventory(lab.inventory, tmp_path, password, vault_file)
        lab.fault("EX02", "http401", times=1)  # an error path too: the rejected login of the audit
        runs = {
            "audit": [PLAYBOOKS["audit"], "-e", TRUST_BUNDLE, "-e", "hybrid_readiness_report_dir=%s" % (tmp_path / "audit")],
            "enforce": [PLAYBOOKS["enforce"], "-e", TRUST_BUNDLE, "-e", "hybrid_readiness_report_dir=%s" % (tmp_path / "enforce")],
        }
        for name, args in runs.items():
            completed = run_ansible(args + ["-vvv"], inventory, program="ansible-playbook", env=env)
            outputs["%s -vvv output" % name] = completed.stdout + completed.stderr
            assert "PLAY RECAP" in completed.stdout, completed.stdout + completed.stderr
        for module, options in (("certificate_info", "trust_bundle={{ hybridmail_trust_bundle }}"),
                                ("send_connector_tls", "trust_bundle={{ hybridmail_trust_bundle }} receive_connectors=true")):
            completed = run_ansible(["exchange", "-m", "hybridmail.exchange." + module, "-a", options, "-vvv", "--check"],
                                    inventory, env=env)
            outputs["%s -vvv output" % module] = completed.stdout + completed.stderr
            assert completed.returncode == 0, completed.stdout + completed.stderr
        servers = lab.status()["servers"]

    # The runs did what they are for: the login was rejected once, then both servers were audited and fixed.
    assert "ex02: connection failed: %s: the specified credentials were rejected by the server" % auth in outputs["audit -vvv output"]
    assert all(server["mail_flow"]["delivered"] for server in servers.values())
    files = {str(path.relative_to(tmp_path)): path.read_text(encoding="utf-8", errors="replace")
             for directory in (tmp_path / "audit", tmp_path / "enforce", results_dir) for path in sorted(directory.rglob("*"))
             if path.is_file()}
    files["ansible.log"] = (tmp_path / "ansible.log").read_text(encoding="utf-8", errors="replace")
    assert {"audit/report.json", "audit/junit.xml", "audit/summary.md", "audit/hosts/ex01.json", "enforce/report.json",
            "enforce/hosts/ex02.json", "tree/ex01", "tree/ex02"} <= set(files)
    # Verbose enough to have shown a secret if anything passed one around: the connection (user, port) and
    # the modules' whole results (the role's task returns a summary; its facts are in the host records).
    for output in outputs.values():
        assert "ESTABLISH WINRM CONNECTION FOR USER: %s" % DEFAULT_USER in output
    for text in (outputs["certificate_info -vvv output"], outputs["send_connector_tls -vvv output"],
                 files["audit/hosts/ex01.json"], files["enforce/hosts/ex01.json"]):
        assert '"certificates": [' in text
    assert not leaks(dict(outputs, **files), secret_values), leaks(dict(outputs, **files), secret_values)

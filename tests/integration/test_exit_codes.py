"""What a pipeline sees (issue 14.5): the audit playbook's exit code, and how a non-compliant fleet, a broken
run and a bad option are told apart, through ansible-playbook, the real winrm plugin and the lab.

A bad option stops the run on the controller before any server is contacted: exit code 1 (Ansible's own for an
error), no report.json. A fleet that is not compliant and a broken run (a server that could not be judged) are
failed hosts to Ansible, exit code 2; report.json's "result" (not_compliant, broken) and the report task's line
say which. README "Exit codes" documents the same.
"""

from __future__ import annotations

import json

from tests.integration.core_versions import phrasings
from tests.integration.playbook_runs import PLAYBOOKS, TRUST_BUNDLE, dead_port, derived_inventory, hybrid_fleet, run_playbook, run_role, write_fleet
from tests.lab.testing import running_lab


def test_compliant_not_compliant_broken_and_a_bad_option_each_say_what_they_are(tmp_path):
    fleet = hybrid_fleet({"EX01": "healthy", "EX02": "unbound"})
    with running_lab(write_fleet(tmp_path / "fleet.yml", fleet), tmp_path=tmp_path) as lab:
        compliant = run_role(lab.inventory, "audit", tmp_path / "compliant", "--limit", "ex01")
        not_compliant = run_role(lab.inventory, "audit", tmp_path / "not-compliant")
        broken_inventory = derived_inventory(lab.inventory, tmp_path / "inventory.yml", {"ex01": {"ansible_port": dead_port()}})
        broken = run_role(broken_inventory, "audit", tmp_path / "broken")
        lab.reset_counters()
        refused_dir = tmp_path / "refused"
        refused = run_playbook([PLAYBOOKS["audit"], "-e", TRUST_BUNDLE, "-e", "hybrid_readiness_report_dir=%s" % refused_dir,
                                "-e", json.dumps({"hybrid_readiness_fail_on": "sometimes"})], lab.inventory)
        commands = {name: server["winrm"]["requests"]["Command"] for name, server in lab.status()["servers"].items()}

    assert (compliant.rc, compliant.report["result"]) == (0, "compliant"), compliant.output
    assert "hybrid readiness: compliant: 1 hosts" in compliant.output

    assert (not_compliant.rc, not_compliant.report["result"]) == (2, "not_compliant"), not_compliant.output
    assert "hybrid readiness: not_compliant: 2 hosts, 1 not compliant" in not_compliant.output

    assert (broken.rc, broken.report["result"]) == (2, "broken"), broken.output
    assert broken.host("ex01")["status"] == "unreachable" and "hybrid readiness: broken: 2 hosts" in broken.output
    assert "- **broken**: not every host was judged" in broken.summary

    output = refused.stdout + refused.stderr
    assert refused.returncode == 1, output
    assert "No server was contacted and nothing was changed." in output
    assert any(text in output for text in phrasings("value of hybrid_readiness_fail_on must be one of: critical, warning, never, got: sometimes"))
    assert commands == {"EX01": 0, "EX02": 0} and not (refused_dir / "report.json").exists()

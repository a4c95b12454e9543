"""Safety rules around enforcement, through ansible-playbook, the real winrm plugin and the lab (issue 16).

- The audit playbook cannot change a server, whatever the variables say (extra vars beat play vars).
- A mutating round trip that fails or times out after it was sent is reported as failed (the host
  answered the audit; it is reachable) with its outcome unknown: `changed: true` plus
  `changed_unknown: true` and the steps that may have applied, in the task result, the host record
  and every report - never `changed: false`.
- Two runs into one report directory: the second is refused before any server is contacted; a
  report directory whose hosts/ cannot be written is refused before anything changes.
- Control characters and bidi overrides from server data are visible escapes in the messages, in
  summary.md and in junit.xml.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

from tests.integration.playbook_runs import PLAYBOOKS, TRUST_BUNDLE, hybrid_fleet, run_playbook, run_role, write_fleet
from tests.lab.testing import running_lab


def commands(servers: dict) -> dict:
    return {name: server["winrm"]["requests"]["Command"] for name, server in servers.items()}


def mutations(servers: dict) -> dict:
    return {name: [m["cmdlet"] for m in server["mutations"]] for name, server in servers.items() if server["mutations"]}


# ---------------------------------------------------------------------------------------------
# The audit playbook never mutates
# ---------------------------------------------------------------------------------------------


def test_the_audit_playbook_refuses_enforce_from_extra_vars_before_contacting_a_server(tmp_path):
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet({"EX01": "unbound", "EX02": "incident"})),
                     tmp_path=tmp_path) as lab:
        lab.reset_counters()
        completed = run_playbook([PLAYBOOKS["audit"], "-e", TRUST_BUNDLE, "-e", "hybrid_readiness_report_dir=%s" % (tmp_path / "r"),
                                  "-e", "hybrid_readiness_mode=enforce"], lab.inventory)
        servers = lab.status()["servers"]
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output
    assert mutations(servers) == {} and commands(servers) == {"EX01": 0, "EX02": 0}, output
    assert "playbooks/hybrid_readiness.yml only audits, but hybrid_readiness_mode is 'enforce'" in output, output
    assert "run playbooks/remediate.yml" in output and "Nothing was contacted and nothing was changed." in output


def test_the_audit_playbook_stays_read_only_even_when_its_refusal_is_skipped(tmp_path):
    """Defence in depth: with the refusal skipped (--skip-tags always), the role's per-host task still runs
    in check mode (a task keyword, which no variable overrides): read-only requests, nothing changes."""
    with running_lab(write_fleet(tmp_path / "fleet.yml", hybrid_fleet({"EX01": "unbound", "EX02": "incident"})),
                     tmp_path=tmp_path) as lab:
        lab.reset_counters()
        run = run_role(lab.inventory, "audit", tmp_path / "reports", "-e", "hybrid_readiness_mode=enforce", "--skip-tags", "always")
        servers = lab.status()["servers"]
    assert mutations(servers) == {}, run.output
    assert commands(servers) == {"EX01": 1, "EX02": 1}, run.output
    assert all(cmdlet.startswith("Get-") for server in servers.values() for cmdlet in server["cmdlet_calls"])
    assert not servers["EX01"]["mail_flow"]["delivered"]  # still broken: nothing was fixed
    assert run.rc == 2, run.output

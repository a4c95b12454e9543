"""Remote sessions that fail or import only part of the cmdlets, through the real winrm plugin and the lab.

tests/lab/fleets/remote_session.yml: EX01's Connect-ExchangeServer is denied and falls back to Read-Host,
whose NonInteractive error would hide why; EX02's session lacks Get-HybridConfiguration (RBAC), which
must not read as "no hybrid configuration"; EX03 is healthy.
"""

from __future__ import annotations

import json
import os
import re

from tests.integration.playbook_runs import run_playbook
from tests.lab.testing import REPO_ROOT, run_ansible, running_lab

FLEET = os.path.join(REPO_ROOT, "tests", "lab", "fleets", "remote_session.yml")
PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "preflight.yml")
_FATAL = re.compile(r"^fatal: \[(?P<host>[^\]]+)\]: FAILED! => (?P<result>\{.*\})$")
_ONE_LINE = re.compile(r"^(\S+) \| (SUCCESS|FAILED!?) (?:=> )?(\{.*\})$", re.MULTILINE)


def test_the_cause_behind_a_prompt_and_a_missing_cmdlet_are_named(tmp_path):
    report_dir = tmp_path / "reports"
    with running_lab(FLEET, tmp_path=tmp_path) as lab:
        audit = run_ansible(["exchange", "-m", "hybridmail.exchange.certificate_info", "-a",
                             "trust_bundle={{ hybridmail_trust_bundle }}", "--one-line"], lab.inventory)
        preflight = run_playbook([PLAYBOOK, "-e", "preflight_report_dir=%s" % report_dir], lab.inventory)
    outcomes = {host: (state, json.loads(body)) for host, state, body in _ONE_LINE.findall(audit.stdout)}
    assert sorted(outcomes) == ["ex01", "ex02", "ex03"], audit.stdout + audit.stderr
    # EX01: the refused session, not only the prompt, and what the prompt means.
    ex01 = outcomes["ex01"][1]["msg"]
    assert outcomes["ex01"][0].startswith("FAILED") and "SessionLoadFailed" in ex01
    assert "Connecting to remote server ex01.contoso.com failed with the following error message : Access is denied." in ex01
    assert "asked for a server (Read-Host)" in ex01
    # EX02: a missing permission, not "no hybrid configuration".
    ex02 = outcomes["ex02"][1]["msg"]
    assert outcomes["ex02"][0].startswith("FAILED"), outcomes["ex02"]
    assert "Get-HybridConfiguration (hybrid) failed" in ex02 and "missing permission" in ex02.lower(), ex02
    assert outcomes["ex03"][0] == "SUCCESS", outcomes["ex03"]
    assert outcomes["ex03"][1]["hybrid_configuration"] is not None
    # The preflight says the same in one line per host.
    fatal = {m["host"]: json.loads(m["result"]) for m in map(_FATAL.match, preflight.stdout.splitlines()) if m}
    assert sorted(fatal) == ["ex01", "ex02"], preflight.stdout + preflight.stderr
    assert "Access is denied." in fatal["ex01"]["msg"]
    assert "audit_reads (failed): Get-HybridConfiguration: " in fatal["ex02"]["msg"] and "missing permission" in fatal["ex02"]["msg"].lower()

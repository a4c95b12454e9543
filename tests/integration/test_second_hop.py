"""The second hop, through the real winrm connection plugin (NTLM) and pywinrm to the lab.

tests/lab/fleets/second_hop.yml: EX01 and EX02 are reached over a logon that cannot pass its credentials
on (NTLM, Kerberos without delegation); EX01 loads the snap-in, whose Exchange cmdlets then cannot reach
Active Directory, EX02 offers only remote PowerShell, whose Kerberos session to /PowerShell fails.
EX03 stands for a delegating connection. The preflight must fail EX01 and EX02 naming the fix.
"""

from __future__ import annotations

import json
import os
import re

from tests.integration.playbook_runs import run_playbook
from tests.lab.testing import REPO_ROOT, run_ansible, running_lab

FLEET = os.path.join(REPO_ROOT, "tests", "lab", "fleets", "second_hop.yml")
PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "preflight.yml")
_FATAL = re.compile(r"^fatal: \[(?P<host>[^\]]+)\]: FAILED! => (?P<result>\{.*\})$")
_ONE_LINE = re.compile(r"^(\S+) \| (SUCCESS|FAILED!?) (?:=> )?(\{.*\})$", re.MULTILINE)
FIX = "ansible_winrm_kerberos_delegation: true, or with CredSSP (ansible_winrm_transport: credssp)"


def test_preflight_names_the_second_hop_and_its_fix(tmp_path):
    report_dir = tmp_path / "reports"
    with running_lab(FLEET, tmp_path=tmp_path, auth="ntlm") as lab:
        completed = run_playbook([PLAYBOOK, "-e", "preflight_report_dir=%s" % report_dir], lab.inventory)
        audit = run_ansible(["exchange", "--limit", "ex01", "-m", "hybridmail.exchange.certificate_info", "--one-line"],
                            lab.inventory)
        status = lab.status()["servers"]
    output = completed.stdout + completed.stderr
    fatal = {m["host"]: json.loads(m["result"]) for m in map(_FATAL.match, completed.stdout.splitlines()) if m}
    assert sorted(fatal) == ["ex01", "ex02"], output
    ex01 = fatal["ex01"]["msg"]
    assert "second_hop (failed): Get-ExchangeServer: Microsoft.Exchange.Data.Directory.ADTransientException: Active " \
           "Directory server DC01.contoso.com is not available" in ex01, ex01
    assert FIX in ex01
    ex02 = fatal["ex02"]["msg"]
    assert ex02.startswith("ex02: preflight failed: cmdlet_loading (failed): ex02: SessionLoadFailed: "), ex02
    assert "0x8009030e" in ex02 and FIX in ex02
    checks = {c["name"]: c for c in json.loads((report_dir / "ex03.json").read_text(encoding="utf-8"))["checks"]}
    assert checks["second_hop"]["status"] == "ok", checks
    # The audit on EX01 fails in one line that says the same, and nothing changed anywhere.
    outcomes = {host: (state, json.loads(body)) for host, state, body in _ONE_LINE.findall(audit.stdout)}
    assert outcomes["ex01"][0].startswith("FAILED"), audit.stdout + audit.stderr
    assert "is not available" in outcomes["ex01"][1]["msg"] and FIX in outcomes["ex01"][1]["msg"]
    assert all(server["mutations"] == [] for server in status.values())

"""What runner.ps1 refuses, through the real winrm connection plugin and pywinrm to the lab.

A server whose PowerShell runs in ConstrainedLanguage mode (AppLocker/WDAC) answers the runner's first
statement with HYBRIDMAIL-REFUSED:LanguageMode:<mode> and exit 1 (docs/wire-contract.md, "Language
mode"); the module says so in one line naming the host, and nothing else runs there.
"""

from __future__ import annotations

import json
import re

import yaml

from tests.lab.testing import running_lab, run_ansible

FLEET = {
    "servers": [
        {"name": "EX01", "language_mode": "ConstrainedLanguage"},
        {"name": "EX02"},
    ],
}
_ONE_LINE_RE = re.compile(r"^(\S+) \| (SUCCESS|FAILED!?) (?:=> )?(\{.*\})$", re.MULTILINE)


def test_constrained_language_mode_is_refused_naming_the_host(tmp_path):
    path = tmp_path / "fleet.yml"
    path.write_text(yaml.safe_dump(FLEET), encoding="utf-8")
    with running_lab(str(path), tmp_path=tmp_path) as lab:
        result = run_ansible(["exchange", "-m", "hybridmail.exchange.certificate_info", "--one-line"], lab.inventory)
        status = lab.status()["servers"]
    outcomes = {host: (state, json.loads(body)) for host, state, body in _ONE_LINE_RE.findall(result.stdout)}
    assert set(outcomes) == {"ex01", "ex02"}, result.stdout + result.stderr
    state, body = outcomes["ex01"]
    assert state.startswith("FAILED")
    assert body["msg"] == ("ex01: PowerShell runs in ConstrainedLanguage mode (AppLocker/WDAC); the runner needs "
                           "FullLanguage. Nothing was run.")
    assert outcomes["ex02"][0] == "SUCCESS"
    # the runner ran once on each server; on EX01 no cmdlet was called
    assert status["EX01"]["winrm"]["commands"]["runner"] == 1 and status["EX01"]["cmdlet_calls"] == {}
    assert status["EX02"]["cmdlet_calls"]["Get-ExchangeCertificate"] == 1

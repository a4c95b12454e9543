"""Certificate tasks in a snap-in session, through ansible-playbook, the real winrm plugin and the lab.

tests/lab/fleets/snapin_certificates.yml: KB 2888788 on servers where Enable-/Remove-ExchangeCertificate
fail in a snap-in session with "Unknown error (0xe0434f4d)" (win-acme issues 1027, 1372, 1789) and work
in a remote session. Enforcement with exchange_session auto runs its changes in a remote_exchange
session; an explicit snap-in session is refused before anything is sent.
"""

from __future__ import annotations

import os

from tests.integration.test_enforce import FLEETS, SERVERS, assert_round_trips, play, status
from tests.lab.testing import running_lab

FLEET = os.path.join(FLEETS, "snapin_certificates.yml")


def test_auto_runs_certificate_tasks_in_a_remote_session(tmp_path):
    # One server: once one has pinned the shared send connector the other has nothing left to change.
    with running_lab(FLEET, tmp_path=tmp_path) as lab:
        completed, results = play(lab, tmp_path, "smtp_certificate", limit="ex01")
        servers = status(lab)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    for name in ("EX01",):
        enables = [m for m in servers[name]["mutations"] if m["cmdlet"] == "Enable-ExchangeCertificate"]
        assert enables and all(m["result"] == "ok" for m in enables), servers[name]["mutations"]
        assert servers[name]["mail_flow"]["delivered"] is True, name


def test_an_explicit_snapin_session_is_refused_before_any_change(tmp_path):
    with running_lab(FLEET, tmp_path=tmp_path) as lab:
        completed, results = play(lab, tmp_path, "smtp_certificate", {"exchange_session": "snapin"})
        servers = status(lab)
        assert_round_trips(lab, SERVERS, 1)  # the audit only
    assert completed.returncode != 0
    for name in SERVERS:
        result = results[name]
        assert result["changed"] is False, (name, result, completed.stdout)
        assert result["msg"] == (
            "%s: exchange_session snapin: Enable-/Remove-ExchangeCertificate can fail in a snap-in session with 'Unknown "
            "error (0xe0434f4d)' while the Exchange Management Shell runs them (win-acme issues 1027, 1372, 1789): use "
            "exchange_session auto or remote_exchange, which run the changes in a remote session. Nothing was changed."
            % name.lower())
        assert servers[name]["mutations"] == [], name

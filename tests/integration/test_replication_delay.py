"""Verification reads that lag the change, through ansible-playbook, the real winrm plugin and the lab.

tests/lab/fleets/replication_delay.yml: KB 2888788 where each configuration read right after a change
answers the state before it for 1 more read (EX01) or 2 (EX02), as a domain controller that has not
replicated the change yet would (Microsoft's New-ExchangeAuthCertificate.ps1 waits 10 s for it). The
verification is repeated in at most two read-only round trips before a mismatch is reported.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tests.integration.test_enforce import FLEETS, assert_round_trips, play, status
from tests.integration.test_renew import PASSWORD, write_pfx
from tests.lab.testing import run_ansible, running_lab

FLEET = os.path.join(FLEETS, "replication_delay.yml")


def _fleet(tmp_path, reads: int) -> str:
    data = yaml.safe_load(open(FLEET, encoding="utf-8"))
    for server in data["servers"]:
        server["replication_delay"] = {"reads": reads}
    path = tmp_path / "fleet.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


# One server per run: once one has pinned the shared send connector the other has nothing left to change.
@pytest.mark.parametrize("name, again", [("EX01", 1), ("EX02", 2)])
def test_a_lagging_verification_is_read_again_and_verified(tmp_path, name, again):
    with running_lab(FLEET, tmp_path=tmp_path) as lab:
        completed, results = play(lab, tmp_path, "smtp_certificate", limit=name.lower())
        servers = status(lab)
        assert_round_trips(lab, [name], 2 + again)  # audit, changes, `again` more reads
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert results[name]["changed"] is True, (name, results[name].get("msg"))
    assert ("read again %d time(s)" % again) in " ".join(results[name]["notes"]), results[name]["notes"]
    assert servers[name]["mail_flow"]["delivered"] is True, name
    assert servers[name]["mutations"] and all(m["result"] == "ok" for m in servers[name]["mutations"])


def test_a_verification_that_stays_wrong_is_reported_after_two_more_reads(tmp_path):
    with running_lab(_fleet(tmp_path, 4), tmp_path=tmp_path) as lab:
        completed, results = play(lab, tmp_path, "smtp_certificate", limit="ex01")
        servers = status(lab)
        assert_round_trips(lab, ["EX01"], 4)  # bounded: audit, changes, two more reads, no more
    assert completed.returncode != 0
    assert results["EX01"]["msg"].startswith("ex01: the re-read state is not the desired one: "), results["EX01"]["msg"]
    assert "still not the desired state" in " ".join(results["EX01"]["notes"])
    # The changes were made once; the lab's state is the desired one, only the reads lag.
    assert [m["result"] for m in servers["EX01"]["mutations"]] == ["ok"] * len(servers["EX01"]["mutations"])
    assert servers["EX01"]["mail_flow"]["delivered"] is True


def test_exchange_certificate_reads_a_lagging_verification_again(tmp_path):
    # The renewal's import, bind and pins on EX01, whose reads lag by one after the change: one more read-only
    # round trip verifies them (plugins/action/exchange_certificate.py, as smtp_certificate does above).
    data = yaml.safe_load(open(os.path.join(FLEETS, "renewal.yml"), encoding="utf-8"))
    for server in data["servers"]:
        server["replication_delay"] = {"reads": 1}
    fleet_path = tmp_path / "renewal.yml"
    fleet_path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    pfx = write_pfx(tmp_path, str(fleet_path), "renewed")
    task = {"pfx_path": pfx, "pfx_password": PASSWORD, "names": ["mail.contoso.com"], "trust_bundle": "{{ hybridmail_trust_bundle }}"}
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    with running_lab(str(fleet_path), tmp_path=lab_dir) as lab:
        completed = run_ansible(["ex01", "-m", "hybridmail.exchange.exchange_certificate", "-a", json.dumps(task)], lab.inventory)
        servers = status(lab)
        assert_round_trips(lab, ["EX01"], 3)  # audit, changes, one more read
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "read again 1 time(s) within 3 s: verified" in output, output
    assert '"changed": true' in output
    assert servers["EX01"]["mutations"] and all(m["result"] == "ok" for m in servers["EX01"]["mutations"])

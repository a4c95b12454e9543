"""The collection as a user runs it from elsewhere (issue 14.3), through ansible-playbook and the lab.

`ansible-playbook hybridmail.exchange.hybrid_readiness` (the playbook by its FQCN) from a directory of the
user's own, with the lab's inventory and no -e: the reports go into ./hybrid_readiness_reports of that
directory, never into the installed collection (read-only in an execution environment), and the lab's
inventory carries the role's trust bundle (the README's lab commands need no -e).
"""

from __future__ import annotations

import json
import os

import yaml

from tests.lab.testing import REPO_ROOT, run_ansible, running_lab

FLEETS = os.path.join(REPO_ROOT, "tests", "lab", "fleets")


def test_the_fqcn_playbook_writes_its_reports_in_the_current_directory_with_the_labs_trust_bundle(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    inside = os.path.join(REPO_ROOT, "playbooks", "reports")
    before = os.path.getmtime(os.path.join(inside, "report.json")) if os.path.exists(os.path.join(inside, "report.json")) else None
    with running_lab(os.path.join(FLEETS, "healthy.yml"), tmp_path=tmp_path) as lab:
        completed = run_ansible(["hybridmail.exchange.hybrid_readiness"], lab.inventory, program="ansible-playbook", cwd=str(work))

    output = completed.stdout + completed.stderr
    # healthy.yml is compliant only when judged with the lab's roots (certifi's do not hold the lab's public root).
    assert completed.returncode == 0, output
    report = json.loads((work / "hybrid_readiness_reports" / "report.json").read_text(encoding="utf-8"))
    assert report["compliant"] is True and [h["host"] for h in report["hosts"]] == ["ex01", "ex02", "ex03"]
    assert (work / "hybrid_readiness_reports" / "junit.xml").is_file() and (work / "hybrid_readiness_reports" / "summary.md").is_file()
    after = os.path.getmtime(os.path.join(inside, "report.json")) if os.path.exists(os.path.join(inside, "report.json")) else None
    assert after == before, "the run wrote into the collection's playbooks/reports"
    assert "%s/hybrid_readiness_reports/summary.md" % work in output
    # The collection's own version (galaxy.yml here; MANIFEST.json when installed), not one written in the code.
    with open(os.path.join(REPO_ROOT, "galaxy.yml"), encoding="utf-8") as handle:
        assert report["collection"]["version"] == yaml.safe_load(handle)["version"]

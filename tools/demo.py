"""`make demo`: audit, remediate and re-audit the lab's `mixed` fleet through real WinRM.

1. start the simulated Exchange fleet (tests/lab/fleets/mixed.yml) and show the KB 2888788 incident
   as the lab sees it (queue to Exchange Online, Event 2004);
2. audit: playbooks/hybrid_readiness.yml (read-only) - the incident is visible, the run fails;
3. remediate: playbooks/remediate.yml (enforce, in batches);
4. audit again: clean except what must not be fixed automatically (e.g. a server with no trusted
   certificate at all); show the lab's mail flow after the fix;
5. print where the reports are and stop the lab.
"""

from __future__ import annotations

import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tests.lab.testing import ansible_env, running_lab  # noqa: E402

FLEET = os.path.join(REPO_ROOT, "tests", "lab", "fleets", "mixed.yml")
REPORTS = os.path.join(REPO_ROOT, "reports", "demo")


def banner(text: str) -> None:
    print("\n" + "=" * 100 + "\n" + text + "\n" + "=" * 100, flush=True)


def mail_flow(lab) -> None:
    """The lab's own view (not the collection's): what transport offers Exchange Online and what happens."""
    print("%-7s %-7s %5s  %-52s %s" % ("server", "queue", "msgs", "certificate transport offers Exchange Online", "gateway"))
    for name, server in sorted(lab.status()["servers"].items()):
        flow = server.get("mail_flow") or {}
        queue = flow.get("queue") or {}
        subjects = {c["thumbprint"]: "%s (%s)" % (c.get("friendly_name") or c.get("subject"), c["thumbprint"][:8])
                    for c in server.get("certificates") or ()}
        offered = subjects.get(flow.get("outbound_certificate")) or (flow.get("selection") or {}).get("failure") or "-"
        gateway = flow.get("gateway") or {}
        verdict = "accepted" if flow.get("delivered") else (gateway.get("reason") or flow.get("last_error") or "")
        print("%-7s %-7s %5s  %-52s %s" % (name, queue.get("status"), queue.get("message_count"), offered, verdict))  # never cut: the reason is the point


def playbook(name: str, lab, stage: str, *extra: str) -> int:
    report_dir = os.path.join(REPORTS, stage)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", lab.inventory,
               os.path.join(REPO_ROOT, "playbooks", name),
               "-e", "hybrid_readiness_report_dir=%s" % report_dir,
               "-e", "hybrid_readiness_trust_bundle={{ hybridmail_trust_bundle }}", *extra]
    print("$ " + " ".join(command), flush=True)
    completed = subprocess.run(command, env=ansible_env(), check=False, capture_output=True, text=True)
    recap = completed.stdout[completed.stdout.rfind("PLAY RECAP"):] if "PLAY RECAP" in completed.stdout else completed.stdout[-3000:]
    print(recap.rstrip())
    if completed.stderr.strip() and completed.returncode not in (0, 2):
        print(completed.stderr[-2000:])
    print("exit code: %d" % completed.returncode)
    summary = os.path.join(report_dir, "summary.md")
    if os.path.exists(summary):
        with open(summary, encoding="utf-8") as handle:
            text = handle.read()
        # The servers table is what a person reads first on a pipeline page.
        print(text[:text.find("## Unreachable")] if "## Unreachable" in text else text[:4000])
    return completed.returncode


def main() -> int:
    os.makedirs(REPORTS, exist_ok=True)
    os.makedirs(os.path.join(REPO_ROOT, "build", "demo-lab"), exist_ok=True)
    with running_lab(FLEET, tmp_path=os.path.join(REPO_ROOT, "build", "demo-lab")) as lab:
        banner("1. The simulated fleet (%s): mail flow to Exchange Online as the lab sees it" % os.path.relpath(FLEET, REPO_ROOT))
        mail_flow(lab)

        banner("2. Audit (read-only, one WinRM round trip per server): the incident is visible")
        audit_rc = playbook("hybrid_readiness.yml", lab, "1-audit")

        banner("3. Remediate (enforce in batches: at most one more round trip per server that changes)")
        remediate_rc = playbook("remediate.yml", lab, "2-remediate")

        banner("4. Audit again")
        reaudit_rc = playbook("hybrid_readiness.yml", lab, "3-reaudit")
        print("Mail flow after the remediation, as the lab sees it:")
        mail_flow(lab)

        banner("5. Reports")
        for stage in ("1-audit", "2-remediate", "3-reaudit"):
            print("%-12s %s/{report.json,junit.xml,summary.md}" % (stage, os.path.join(os.path.relpath(REPORTS, REPO_ROOT), stage)))
        print("\nexit codes: audit %d, remediate %d, re-audit %d (non-zero: some server still needs a person,"
              " see the re-audit summary)" % (audit_rc, remediate_rc, reaudit_rc))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the action plugin plugins/action/readiness_report.py runs on the controller.

DOCUMENTATION = r"""
---
module: readiness_report
short_description: Hybrid readiness findings and fleet reports from registered audit results
version_added: 0.1.0
description:
  - Reads each host's registered result - M(hybridmail.exchange.readiness_check)'s summary, whose record
    (facts and findings) it loads from the file the summary names, or a M(hybridmail.exchange.certificate_info)
    or M(hybridmail.exchange.smtp_certificate) result, which it turns into findings with stable IDs (see
    C(docs/findings.md)) - adds the fleet-wide findings (the hybrid certificate must be the same on every
    hybrid transport server), and writes C(report.json), C(junit.xml) and C(summary.md).
  - Runs on the controller and contacts no host. Use it once per play (C(run_once)); the
    C(hybridmail.exchange.hybrid_readiness) role does.
  - Unreachable and failed hosts are errors in every report, never left out.
author:
  - hybridmail.exchange contributors (@hybridmail)
extends_documentation_fragment:
  - hybridmail.exchange.findings
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: It writes the reports in check mode too; they describe the run.
  diff_mode:
    support: none
  platform:
    platforms: all
options:
  hosts:
    description: The inventory hosts to report on, usually C(ansible_play_hosts_all).
    type: list
    elements: str
    required: true
  result_var:
    description: The host variable holding each host's registered module result.
    type: str
    default: hybrid_readiness_host
  report_dir:
    description:
      - Directory on the controller for the three reports (created when missing).
      - One run at a time writes it. With O(validate_only=true), this run takes its lock, the file
        C(<report_dir>/.hybridmail.lock) (pid, controller host, start time), before any server is contacted; a
        second run into the same directory is refused there. The lock stays across the batches of a C(serial)
        play and the report of the last batch removes it. A lock whose run no longer exists is refused with
        the command that clears it when that run died during a batch, and taken over when it ended between
        batches (a stopped rollout). Without the role's check, no lock is taken and none is needed.
    type: path
    required: true
  mode:
    description: Recorded in the reports.
    type: str
    choices: [audit, enforce]
    default: audit
  min_key_size:
    description: RSA keys shorter than this are weak.
    type: int
    default: 2048
  validate_only:
    description:
      - Only check the options, the exemptions and that O(report_dir) and its C(hosts/) subdirectory (the host
        records) can be written, and take the report directory's lock (see O(report_dir)); write no report.
        The role does this once before it contacts any server, so that a mistake there, or another run into
        the same directory, is found before the first server is changed.
    type: bool
    default: false
  batch:
    description:
      - The hosts of this batch of a C(serial) play as it starts (C(ansible_play_batch) in the O(validate_only)
        task, which returns it as RV(batch)). With O(max_fail_percentage), the report task fails when more than
        that share of them failed and a batch follows, so that the next batch changes nothing. Ansible's own
        C(max_fail_percentage) does not count a host that fails inside a block with C(always) until its batch has
        ended, so it cannot stop a rollout whose batch partly failed.
    type: list
    elements: str
  max_fail_percentage:
    description:
      - See O(batch). A host whose only problem is what enforcement cannot fix (RV(hosts) C(cannot_fix)) is not
        failed. After the last batch of an C(enforce) run, the task fails when such hosts remain.
    type: int
"""

EXAMPLES = r"""
- name: Write the fleet reports once
  hybridmail.exchange.readiness_report:
    hosts: "{{ ansible_play_hosts_all }}"
    report_dir: hybrid_readiness_reports
  run_once: true
  register: readiness
"""

RETURN = r"""
compliant:
  description: Every host and the fleet meet O(fail_on).
  returned: success
  type: bool
result:
  description:
    - C(compliant) (the playbook exits 0), C(not_compliant) (every host was judged, some or the fleet miss O(fail_on))
      or C(broken) (some host failed, was unreachable or was not run, so the verdict is incomplete); both exit 2.
  returned: success
  type: str
  sample: not_compliant
fleet_compliant:
  description: The fleet-wide findings meet O(fail_on).
  returned: success
  type: bool
totals:
  description: Host and finding counts of the run.
  returned: success
  type: dict
reports:
  description: Paths of C(json), C(junit) and C(markdown).
  returned: success
  type: dict
hosts:
  description:
    - Per host C(compliant), C(status) (ok, failed, unreachable), C(error), C(counts), C(findings) (one line each) and
      C(cannot_fix) (what keeps an enforced host from being compliant that enforcement cannot change).
  returned: success
  type: dict
fleet_findings:
  description: The fleet-wide findings, one line each.
  returned: success
  type: list
  elements: str
run_id:
  description: The id of this run in the report directory's lock.
  returned: with O(validate_only=true), on success
  type: str
lock:
  description: The path of the report directory's lock, which this run now holds.
  returned: with O(validate_only=true), on success
  type: str
batch:
  description: O(batch) as given, for the report task of the same batch.
  returned: with O(validate_only=true), on success
  type: list
  elements: str
"""

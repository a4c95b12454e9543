#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the action plugin plugins/action/readiness_check.py runs on the controller
# (the logic of smtp_certificate, then _findings and _report), and talks to the server through runner.ps1.

DOCUMENTATION = r"""
---
module: readiness_check
short_description: Audit or enforce one Exchange server and judge its hybrid readiness, in one task per host
version_added: 0.1.0
description:
  - The per-host task of the C(hybridmail.exchange.hybrid_readiness) role. With O(mode=audit) it does what
    M(hybridmail.exchange.smtp_certificate) does in check mode (one read-only WinRM round trip); with
    O(mode=enforce) what it does for real (at most one more round trip, only when something changes).
  - It then turns the result into findings (see C(docs/findings.md)), writes the host's full record (facts,
    findings, error) to C(<report_dir>/hosts/<host>.json) for M(hybridmail.exchange.readiness_report), and
    returns only a summary. A fleet run so keeps one small result per host instead of every host's facts,
    and a failing host prints a few lines instead of its facts.
  - The task fails when the host does not meet O(fail_on) - with the error when the host could not be
    audited or changed, else with its findings, one per line.
  - With O(mode=enforce), a host whose only problem is what enforcement cannot do (the interlock refused its
    plan, or its findings have no auto-fix) does not fail the task; it warns, and RV(cannot_fix) and the reports
    say what the server needs, so that a rollout goes on past it. With O(dry_run), in check mode, a host with
    planned changes does not fail either, so that its plan and diff show.
  - An unreachable server fails the task instead of being marked unreachable, so that the play goes on to
    the report; RV(status) and the reports say C(unreachable).
author:
  - hybridmail.exchange contributors (@hybridmail)
extends_documentation_fragment:
  - hybridmail.exchange.findings
  - hybridmail.exchange.trust
  - hybridmail.exchange.session
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - O(mode=audit) is read-only with or without check mode. With O(mode=enforce), check mode runs only the
        audit round trip and RV(plan) lists what would change.
  diff_mode:
    support: full
    details:
      - With O(mode=enforce), as M(hybridmail.exchange.smtp_certificate) - services, C(TlsCertificateName) and
        the internal transport certificate before and after.
  platform:
    platforms: windows
options:
  mode:
    description:
      - C(audit) never changes anything. C(enforce) applies M(hybridmail.exchange.smtp_certificate)'s plan.
    type: str
    choices: [audit, enforce]
    default: audit
  scope:
    description: As O(hybridmail.exchange.smtp_certificate#module:scope).
    type: str
    choices: [hybrid, all]
    default: hybrid
  exempt_thumbprints:
    description: As O(hybridmail.exchange.smtp_certificate#module:exempt_thumbprints).
    type: list
    elements: str
    default: []
  exempt_internal_transport:
    description: As O(hybridmail.exchange.smtp_certificate#module:exempt_internal_transport).
    type: bool
    default: true
  remove_untrusted:
    description: As O(hybridmail.exchange.smtp_certificate#module:remove_untrusted).
    type: bool
    default: false
  pin_connectors:
    description: As O(hybridmail.exchange.smtp_certificate#module:pin_connectors).
    type: bool
    default: true
  event_lookback_days:
    description:
      - Also read Event ID 2004 of the last this many days; the findings about mail flow use them. C(0) skips
        the event log.
    type: int
    default: 0
  dry_run:
    description:
      - With O(mode=enforce) in check mode, judge the host by what its plan leaves (a dry run of enforcement) - a host
        with planned changes does not fail, so that its plan and diff show. The role sets it in
        C(playbooks/remediate.yml) only; the audit playbook fails every host that does not meet O(fail_on).
    type: bool
    default: false
  vars_prefix:
    description:
      - Read each option this task does not set from the variable C(<vars_prefix>_<option>) where that variable
        is defined (for example C(hybrid_readiness_fail_on) for O(fail_on)); options set in the task win.
      - A variable's value is templated only when it is a template itself. Ansible compiles each templated task
        argument in every host's worker process, so a role that passes its options this way (the
        C(hybrid_readiness) role sets C(vars_prefix=hybrid_readiness)) saves a Jinja compile per option and host.
      - A variable whose template fails fails the host, naming the option and the variable, before any server is contacted.
    type: str
    version_added: 0.2.0
  report_dir:
    description:
      - Directory on the controller of the run's reports. The host's record goes to its C(hosts/) subdirectory
        (created when missing), replacing the record of the host's previous run.
      - When another run holds the report directory's lock (see O(hybridmail.exchange.readiness_report#module:report_dir)),
        the task fails before the server is contacted.
    type: path
    required: true
seealso:
  - module: hybridmail.exchange.readiness_report
  - module: hybridmail.exchange.smtp_certificate
"""

EXAMPLES = r"""
- name: Audit every server, then write the fleet reports once, whatever happened to each server
  block:
    - name: Audit
      hybridmail.exchange.readiness_check:
        report_dir: hybrid_readiness_reports
        event_lookback_days: 7
      register: hybrid_readiness_host
  always:
    - name: Reports
      hybridmail.exchange.readiness_report:
        hosts: "{{ ansible_play_hosts_all }}"
        report_dir: hybrid_readiness_reports
      run_once: true
      delegate_to: localhost

- name: Enforce, and fail only on critical findings
  hybridmail.exchange.readiness_check:
    mode: enforce
    report_dir: /var/lib/hybridmail/reports
    fail_on: critical
"""

RETURN = r"""
compliant:
  description: The host meets O(fail_on).
  returned: always
  type: bool
status:
  description:
    - C(ok) (audited), C(failed) (the audit or a change failed, or the outcome of a change is unknown) or
      C(unreachable) (the audit round trip could not reach the host).
  returned: always
  type: str
  sample: ok
error:
  description: Why the host could not be audited or changed, or null.
  returned: always
  type: str
counts:
  description: Findings per severity (C(critical), C(warning), C(info)) and C(exempted).
  returned: always
  type: dict
  sample: {critical: 1, warning: 0, info: 2, exempted: 0}
findings:
  description: The findings that are not exempted, one line each.
  returned: always
  type: list
  elements: str
  sample: ["critical HM101: Trusted and untrusted SMTP certificates compete for a hybrid FQDN (KB 2888788)"]
plan:
  description: The steps of M(hybridmail.exchange.smtp_certificate)'s plan, in words (what an audit would change).
  returned: always
  type: list
  elements: str
changed_unknown:
  description:
    - With O(mode=enforce), true when the mutating round trip was sent but gave no usable answer (HTTP 500, a
      dropped connection, a read or task timeout, a truncated or garbled answer), so that whether it changed the
      server is unknown. The task then fails with RV(status=failed) (the host answered the audit, so it is reachable)
      and C(changed=true), because Ansible needs a boolean and a change that happened must never be reported as
      none. The host record and the reports say C(changed_unknown) and list RV(may_have_applied).
  returned: when true
  type: bool
may_have_applied:
  description: With RV(changed_unknown), the steps of that round trip in words, any of which may have been applied.
  returned: with RV(changed_unknown)
  type: list
  elements: str
cannot_fix:
  description:
    - With O(mode=enforce), why the host does not meet O(fail_on) that enforcement cannot change, one line each - the
      interlock's reasons for refusing the plan (nothing was sent), or the findings without auto-fix. Empty otherwise.
  returned: always
  type: list
  elements: str
record:
  description: The path of the host's record, which M(hybridmail.exchange.readiness_report) reads.
  returned: when the record was written
  type: str
record_id:
  description: The id of that record; the report accepts the file only when it still carries it.
  returned: when the record was written
  type: str
"""

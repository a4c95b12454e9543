# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # What readiness_check and readiness_report share: how findings are judged (docs/findings.md).
    DOCUMENTATION = r"""
options:
  fail_on:
    description:
      - A host is not compliant with a finding of this severity or worse, or when it could not be audited.
        C(never) makes every host compliant; errors are still reported.
    type: str
    choices: [critical, warning, never]
    default: critical
  expiry_warning_days:
    description: Expiry within this many days is a warning.
    type: int
    default: 60
  expiry_critical_days:
    description: Expiry within this many days is critical; at most O(expiry_warning_days).
    type: int
    default: 30
  exemptions:
    description:
      - Accepted findings, each with C(id) and C(reason), and optionally C(hosts) (inventory name globs),
        C(subjects) and C(until) (a date after which the exemption no longer applies).
    type: list
    elements: dict
    default: []
"""

# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Whether findings pass a policy (fail_on), and the exemptions a user grants. Pure Python, no
Ansible imports.
"""

from __future__ import annotations

import datetime
import fnmatch
from dataclasses import replace
from typing import Iterable, Mapping

from ._catalogue import CATALOGUE, RANK, SEVERITIES, Finding

UTC = datetime.timezone.utc
FAIL_ON = ("critical", "warning", "never")


def counts(findings: Iterable[Finding]) -> dict:
    """Non-exempt findings by severity, and how many were exempt."""
    result = {severity: 0 for severity in SEVERITIES}
    result["exempted"] = 0
    for finding in findings:
        if finding.exemption:
            result["exempted"] += 1
        else:
            result[finding.severity] += 1
    return result


def compliance(findings: Iterable[Finding | Mapping], fail_on: str = "critical") -> bool:
    """Whether findings pass the policy: fail_on "critical" fails on any critical finding, "warning" on any
    critical or warning one, "never" never fails. Exempt findings never count."""
    if fail_on not in FAIL_ON:
        raise ValueError("fail_on must be one of %s, got %r" % (", ".join(FAIL_ON), fail_on))
    if fail_on == "never":
        return True
    threshold = RANK[fail_on]
    return not any(
        RANK[finding.severity] <= threshold
        for finding in (Finding.from_dict(item) for item in findings)
        if not finding.exemption
    )


# ---------------------------------------------------------------------------------------------
# Exemptions
# ---------------------------------------------------------------------------------------------


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return [str(value)]


def validate_exemptions(exemptions: Iterable[Mapping] | None) -> list[dict]:
    """Exemptions checked and normalized: {"id", "reason", "hosts": [glob], "subjects": [...], "until": date|None}.

    id must be a catalogue id (a typo must not silently exempt nothing); reason is required.
    """
    result = []
    for position, exemption in enumerate(exemptions or (), start=1):
        if not isinstance(exemption, Mapping):
            raise ValueError("exemption %d must be a mapping" % position)
        unknown = sorted(set(exemption) - {"id", "reason", "hosts", "subjects", "until"})
        if unknown:
            raise ValueError("exemption %d has unknown keys: %s" % (position, ", ".join(unknown)))
        check_id = str(exemption.get("id") or "")
        if check_id not in CATALOGUE:
            raise ValueError("exemption %d names %r, which is not a finding id (see docs/findings.md)" % (position, check_id))
        reason = str(exemption.get("reason") or "").strip()
        if not reason:
            raise ValueError("exemption %d (%s) needs a reason" % (position, check_id))
        until = exemption.get("until")
        if until is not None:
            text = until.isoformat() if isinstance(until, (datetime.date, datetime.datetime)) else str(until)
            try:
                until = datetime.date.fromisoformat(text[:10])
            except ValueError:
                raise ValueError("exemption %d (%s): until %r is not a date (YYYY-MM-DD)" % (position, check_id, until)) from None
        result.append({
            "id": check_id,
            "reason": reason,
            "hosts": [pattern.lower() for pattern in _as_list(exemption.get("hosts"))],
            "subjects": [subject.casefold() for subject in _as_list(exemption.get("subjects"))],
            "until": until,
        })
    return result


def apply_exemptions(findings: Iterable[Finding], exemptions: Iterable[Mapping] | None, host: str | None = None,
                     now: datetime.datetime | None = None) -> list[Finding]:
    """The findings with `exemption` set where an exemption matches: same id, host matching one of its glob
    patterns (any host when none), subject among its subjects (any when none), and `until` not passed."""
    rules = validate_exemptions(exemptions)
    today = (now or datetime.datetime.now(UTC)).date()
    host_key = (host or "").lower()
    result = []
    for finding in findings:
        for rule in rules:
            if rule["id"] != finding.id or (rule["until"] is not None and rule["until"] < today):
                continue
            if rule["hosts"] and not any(fnmatch.fnmatchcase(host_key, pattern) for pattern in rule["hosts"]):
                continue
            if rule["subjects"] and finding.subject.casefold() not in rule["subjects"]:
                continue
            finding = replace(finding, exemption=rule["reason"])
            break
        result.append(finding)
    return result

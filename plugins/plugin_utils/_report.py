# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fleet reports, written once per run on the controller: report.json, junit.xml and summary.md.

Input (a "run"):

    {"hosts": {inventory_hostname: {"facts": <certificate_info facts> | None,
                                    "findings": [Finding | Finding.to_dict()],
                                    "error": str | None, "unreachable": bool, "changed": bool | None,
                                    "may_have_applied": [step description] (the outcome of a mutating
                                    round trip that got no usable answer: changed is unknown)}},
     "fleet_findings": [...] (optional: computed from the facts when absent),
     "fail_on": "critical" | "warning" | "never", "mode": "audit" | "enforce",
     "options": {...} (echoed), "generated_at": ISO 8601 or datetime (default: now),
     "collection_version": str | None, "include_facts": bool (default True)}

build_report() turns it into the report.json document (schema: docs/report-schema.md,
docs/report.schema.json); render_junit() and render_markdown() render that document, so every
report says the same thing. A host that failed or was unreachable is an error in all three, never
left out. Only the standard library is used; every string from a server is treated as hostile
(XML 1.0 forbidden characters are replaced, Markdown is escaped, JSON is valid UTF-8).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import tempfile
import uuid
import xml.etree.ElementTree as ET
from typing import Callable, Iterable, Mapping

from . import _catalogue, _compliance, _findings, _text
from ._model import iso_utc

SCHEMA = "hybridmail.exchange/report"
VERSION = 1
COLLECTION = "hybridmail.exchange"
FILE_NAMES = {"json": "report.json", "junit": "junit.xml", "markdown": "summary.md"}

STATUS_OK, STATUS_FAILED, STATUS_UNREACHABLE = "ok", "failed", "unreachable"
FLEET_SUITE = "fleet"
AUDIT_CASE = "audit"

_FAILING_SEVERITIES = (_catalogue.CRITICAL, _catalogue.WARNING)


class ReportError(ValueError):
    """The run given to the report builder is not usable; the message says why."""


# ---------------------------------------------------------------------------------------------
# Text hygiene
# ---------------------------------------------------------------------------------------------

_SURROGATES = re.compile("[\ud800-\udfff]")


def _clean_text(text: str) -> str:
    """Lone surrogates (possible from decoded JSON) cannot be encoded as UTF-8: replace them."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


def _clean(value):
    """A JSON-able deep copy with every string encodable as UTF-8."""
    # The plain JSON types first, by exact type: a fleet's facts are hundreds of thousands of values,
    # and the abstract Mapping check is the slow one.
    kind = type(value)
    if kind is str:
        return _clean_text(value)
    if kind is dict:
        return {_clean_text(key if isinstance(key, str) else str(key)): _clean(item) for key, item in value.items()}
    if kind is list:
        return [_clean(item) for item in value]
    if value is None or kind is bool or kind is int:
        return value
    if isinstance(value, Mapping):
        return {_clean_text(str(key)): _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, datetime.datetime):
        return iso_utc(value)
    return _clean_text(str(value))


def xml_text(value) -> str:
    """Text safe for an XML 1.0 document and for a person reading it: control characters (those XML 1.0
    cannot carry among them) and bidi controls become visible escapes (_text.visible); line breaks and tabs stay."""
    return _text.visible(value, keep=_text.MESSAGE_KEEP)


# What can become markup inside a table cell or after a list marker: emphasis, code, links and images,
# HTML, table cells, strike-through, math (GitLab), entities. Block syntax (#, -, 1.) cannot start
# there. Bare URLs may still be auto-linked by GFM, but they show their full text.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>!|~$&])")
# Line breaks and tabs become spaces (a value stays on one line); every other control character is escaped.
_MD_SPACE = re.compile("[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]+")


def md(value) -> str:
    """Text for one Markdown table cell or list item: on one line, nothing in it becomes markup, links or HTML,
    and control characters and bidi controls are visible escapes (_text.visible)."""
    text = _text.visible(" ".join(_MD_SPACE.sub(" ", "" if value is None else str(value)).split()))
    return _MD_SPECIAL.sub(r"\\\1", text)


# ---------------------------------------------------------------------------------------------
# report.json
# ---------------------------------------------------------------------------------------------


def _generated_at(value) -> str:
    if value is None:
        return iso_utc(datetime.datetime.now(datetime.timezone.utc))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise ReportError("generated_at must be timezone-aware")
        return iso_utc(value)
    return str(value)


def _host_entry(host: str, entry: Mapping, fail_on: str, include_facts: bool) -> dict:
    if not isinstance(entry, Mapping):
        raise ReportError("host %s: expected a mapping with facts, findings, error, unreachable, changed" % host)
    facts = entry.get("facts")
    error = entry.get("error")
    unreachable = bool(entry.get("unreachable"))
    if unreachable:
        status = STATUS_UNREACHABLE
        error = str(error or "host unreachable")
    elif error or not isinstance(facts, Mapping):
        status = STATUS_FAILED
        error = str(error or "no facts were returned for this host")
    else:
        status = STATUS_OK
        error = None
    try:
        findings = _catalogue.sort_findings(_catalogue.Finding.from_dict(item) for item in entry.get("findings") or ())
    except ValueError as exc:
        raise ReportError("host %s: %s" % (host, exc)) from None
    server = (facts or {}).get("server") if isinstance(facts, Mapping) else None
    changed = entry.get("changed")
    may_have_applied = [str(step) for step in entry.get("may_have_applied") or ()]
    return {
        "host": host,
        "status": status,
        "audited": isinstance(facts, Mapping),
        "error": error,
        # Unknown (null) when nothing says, and when a mutating round trip got no usable answer; then
        # changed_unknown is true and may_have_applied names the steps that may have run.
        "changed": None if may_have_applied else changed if isinstance(changed, bool) else None,
        "changed_unknown": bool(may_have_applied),
        "may_have_applied": may_have_applied,
        # enforce mode: the steps of a dry run (check mode: planned, nothing sent) or those the server applied
        "planned_changes": [str(step) for step in entry.get("planned_changes") or ()],
        "applied_changes": [str(step) for step in entry.get("applied_changes") or ()],
        # enforce mode: what keeps the host from meeting fail_on that enforcement cannot change (not a failure)
        "cannot_fix": [str(line) for line in entry.get("cannot_fix") or ()] if status == STATUS_OK else [],
        # enforce mode: the other servers this host's (planned) changes change too (organisation-wide send connectors)
        "also_changes": [str(server) for server in entry.get("also_changes") or ()],
        # how long the host's audit (and enforcement) took, measured by readiness_check; null when unknown
        "duration_seconds": round(float(entry["duration_seconds"]), 3) if isinstance(entry.get("duration_seconds"), (int, float)) else None,
        # fail_on never: nothing fails the run (errors are still reported everywhere); otherwise a host
        # that was not audited cannot be called compliant.
        "compliant": fail_on == "never" or (status == STATUS_OK and _compliance.compliance(findings, fail_on)),
        "server": {
            "name": server.get("name"),
            "fqdn": server.get("fqdn"),
            "version": server.get("version"),
        } if isinstance(server, Mapping) else None,
        "hybrid_fqdns": list((facts or {}).get("hybrid_fqdns") or ()) if isinstance(facts, Mapping) else [],
        "gathered_at": facts.get("gathered_at") if isinstance(facts, Mapping) else None,
        "counts": _compliance.counts(findings),
        "findings": [finding.to_dict() for finding in findings],
        "facts": dict(facts) if include_facts and isinstance(facts, Mapping) else None,
    }


def build_report(run: Mapping) -> dict:
    """The report.json document of a run (see the module docstring). Raises ReportError for a bad run."""
    if not isinstance(run, Mapping) or not isinstance(run.get("hosts"), Mapping):
        raise ReportError("a run must be a mapping with a 'hosts' mapping")
    fail_on = run.get("fail_on") or "critical"
    if fail_on not in _compliance.FAIL_ON:
        raise ReportError("fail_on must be one of %s, got %r" % (", ".join(_compliance.FAIL_ON), fail_on))
    mode = run.get("mode") or "audit"
    include_facts = run.get("include_facts", True) is not False
    hosts = [_host_entry(str(host), run["hosts"][host], fail_on, include_facts) for host in sorted(run["hosts"], key=str)]

    fleet = run.get("fleet_findings")
    if fleet is None:
        fleet = _findings.fleet_findings({host: fleet_certificates(run["hosts"][host]) for host in run["hosts"]})
    try:
        fleet = _catalogue.sort_findings(_catalogue.Finding.from_dict(item) for item in fleet)
    except ValueError as exc:
        raise ReportError("fleet findings: %s" % exc) from None

    totals = {
        "hosts": len(hosts),
        "ok": sum(1 for entry in hosts if entry["status"] == STATUS_OK),
        "failed": sum(1 for entry in hosts if entry["status"] == STATUS_FAILED),
        "unreachable": sum(1 for entry in hosts if entry["status"] == STATUS_UNREACHABLE),
        "changed": sum(1 for entry in hosts if entry["changed"]),
        "changed_unknown": sum(1 for entry in hosts if entry["changed_unknown"]),
        "planned_changes": sum(1 for entry in hosts if entry["planned_changes"]),
        "non_compliant_hosts": sum(1 for entry in hosts if not entry["compliant"]),
        "cannot_fix": sum(1 for entry in hosts if entry["cannot_fix"]),
        "findings": {key: sum(entry["counts"][key] for entry in hosts) + _compliance.counts(fleet)[key]
                     for key in _catalogue.SEVERITIES + ("exempted",)},
    }
    fleet_compliant = _compliance.compliance(fleet, fail_on)
    compliant = all(entry["compliant"] for entry in hosts) and fleet_compliant
    report = {
        "schema": SCHEMA,
        "version": VERSION,
        "generated_at": _generated_at(run.get("generated_at")),
        "collection": {"name": COLLECTION, "version": run.get("collection_version")},
        "mode": mode,
        # enforce mode in check mode (--check): nothing was sent; planned_changes say what enforce would do
        "dry_run": bool(run.get("dry_run")) and mode == "enforce",
        "fail_on": fail_on,
        "compliant": compliant,
        "result": run_result(hosts, compliant),
        "options": dict(run.get("options") or {}),
        "totals": totals,
        "checks": [check.to_dict() for check in _catalogue.CHECKS],
        "hosts": hosts,
        "fleet": {
            "hosts_considered": totals["ok"],
            "compliant": fleet_compliant,
            "counts": _compliance.counts(fleet),
            "findings": [finding.to_dict() for finding in fleet],
        },
    }
    return _clean(report)


RESULT_COMPLIANT, RESULT_NOT_COMPLIANT, RESULT_BROKEN = "compliant", "not_compliant", "broken"


def run_result(hosts: list, compliant: bool) -> str:
    """What the run's exit code 2 means, for a pipeline: "broken" when some host could not be audited or
    enforced (failed, unreachable, not run), so the verdict is incomplete; "not_compliant" when every host
    was judged and some (or the fleet) miss fail_on; "compliant" (exit code 0) otherwise."""
    if any(entry["status"] != STATUS_OK for entry in hosts):
        return RESULT_BROKEN
    return RESULT_COMPLIANT if compliant else RESULT_NOT_COMPLIANT


def render_json(report: Mapping) -> str:
    # The exact text, with control and bidi characters as JSON \\u escapes: the same data, safe on a console.
    return _text.json_safe(json.dumps(report, indent=2, ensure_ascii=False, default=str)) + "\n"


def _render_json_chunks(report: Mapping, facts_of: Callable[[str], Mapping | None]):
    """render_json(report) with each audited host's "facts" taken from facts_of(host), one host at a
    time, as UTF-8 chunks: the whole fleet's facts are never in memory at once."""
    marker = "hybridmail-facts-%s" % uuid.uuid4().hex  # no server string can guess it
    audited = [entry["host"] for entry in report["hosts"] if entry["audited"]]
    marked = dict(report, hosts=[dict(entry, facts=marker if entry["audited"] else None) for entry in report["hosts"]])
    parts = render_json(marked).split(json.dumps(marker))
    if len(parts) != len(audited) + 1:
        raise ReportError("report.json could not be assembled (%d facts markers for %d audited hosts)" % (len(parts) - 1, len(audited)))
    yield parts[0].encode("utf-8")
    for host, part in zip(audited, parts[1:]):
        # A host's facts sit three levels deep (report, hosts, host): their own lines get that indent.
        text = _text.json_safe(json.dumps(_clean(facts_of(host)), indent=2, ensure_ascii=False, default=str))
        yield text.replace("\n", "\n      ").encode("utf-8")
        yield part.encode("utf-8")


# ---------------------------------------------------------------------------------------------
# junit.xml
# ---------------------------------------------------------------------------------------------


def _case_name(check: Mapping) -> str:
    return "%s %s: %s" % (check["id"], check["name"], check["title"])


def _finding_text(finding: Mapping) -> str:
    lines = [
        "[%s] %s %s%s" % (finding["severity"], finding["id"], finding["title"],
                          " (exempt: %s)" % finding["exemption"] if finding.get("exemption") else ""),
        "Subject: %s" % finding.get("subject"),
        "Auto-fix in enforce mode: %s" % ("yes" if finding.get("auto_fix") else "no"),
        "Evidence:",
        json.dumps(finding.get("evidence") or {}, indent=2, ensure_ascii=False, sort_keys=True, default=str),
        "Remediation: %s" % finding.get("remediation"),
    ]
    if finding.get("references"):
        lines.append("References: %s" % " ".join(finding["references"]))
    return "\n".join(lines)


def junit_classname(host: str) -> str:
    """A testcase classname for a host. Jenkins (and the xunit plugin) split a classname at its last dot into
    package and class, which would file ex01.contoso.com as class "com" of package "ex01.contoso": the
    dots of a host name become underscores (the testsuite keeps the name as it is)."""
    return host.replace(".", "_")


def _add_case(suite: ET.Element, classname: str, name: str, counters: dict, seconds: float = 0.0) -> ET.Element:
    counters["tests"] += 1
    return ET.SubElement(suite, "testcase", {"classname": xml_text(junit_classname(classname)), "name": xml_text(name),
                                             "time": _seconds(seconds)})


def _seconds(value) -> str:
    return "%.3f" % value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0 else "0"


def _check_case(suite, classname, check: Mapping, findings: list, counters: dict, fail_on: str = "critical") -> None:
    case = _add_case(suite, classname, _case_name(check), counters)
    active = [f for f in findings if not f.get("exemption")]
    # Only what fails the run under fail_on is a <failure>: a warning under fail_on critical passes, its
    # details in <system-out>, so that the pipeline's test result and the run's exit code agree.
    failing = failing_findings(active, fail_on)
    details = "\n\n".join(_finding_text(f) for f in findings)
    if failing:
        counters["failures"] += 1
        worst = failing[0]  # findings are sorted, most severe first
        message = worst["title"] + (" (+%d more)" % (len(failing) - 1) if len(failing) > 1 else "")
        failure = ET.SubElement(case, "failure", {"type": xml_text(worst["severity"]), "message": xml_text(message)})
        failure.text = xml_text(details)
    elif findings and not active:
        counters["skipped"] += 1
        ET.SubElement(case, "skipped", {"message": xml_text("exempt: %s" % "; ".join(sorted({f["exemption"] for f in findings})))})
        ET.SubElement(case, "system-out").text = xml_text(details)
    elif findings:
        ET.SubElement(case, "system-out").text = xml_text(details)  # info only: passes, with the details


def _properties(suite: ET.Element, values: Mapping) -> None:
    properties = ET.SubElement(suite, "properties")
    for name, value in values.items():
        if value is not None:
            ET.SubElement(properties, "property", {"name": name, "value": xml_text(value)})


def _suite(root: ET.Element, name: str, timestamp: str, seconds: float = 0.0) -> tuple[ET.Element, dict]:
    suite = ET.SubElement(root, "testsuite", {"name": xml_text(name), "timestamp": timestamp[:19], "time": _seconds(seconds)})
    return suite, {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}


def _close_suite(suite: ET.Element, counters: dict, totals: dict) -> None:
    for key, value in counters.items():
        suite.set(key, str(value))
        if key in totals:  # <testsuites> has no skipped attribute in the Jenkins/xunit JUnit schema
            totals[key] += value


def render_junit(report: Mapping) -> bytes:
    """JUnit XML: a testsuite per host with a testcase "audit" (an <error> when the host failed or was
    unreachable) and one testcase per server check of the catalogue (a <failure> per check with
    critical or warning findings, <skipped> when all its findings are exempt or the host was not
    audited, passing otherwise, info findings in <system-out>), then a "fleet" testsuite."""
    root = ET.Element("testsuites", {"name": "%s hybrid readiness" % COLLECTION})
    totals = {"tests": 0, "failures": 0, "errors": 0}
    fail_on = report.get("fail_on") or "critical"
    timestamp = report["generated_at"]
    server_checks = [check for check in report["checks"] if check["scope"] == "server"]
    fleet_checks = [check for check in report["checks"] if check["scope"] == "fleet"]

    elapsed = 0.0
    for entry in report["hosts"]:
        host = entry["host"]
        seconds = entry.get("duration_seconds") or 0.0
        elapsed += seconds
        suite, counters = _suite(root, host, timestamp, seconds)
        _properties(suite, {
            "status": entry["status"],
            "compliant": str(entry["compliant"]).lower(),
            "changed": "unknown" if entry["changed_unknown"] else None if entry["changed"] is None else str(entry["changed"]).lower(),
            "may_have_applied": "; ".join(entry["may_have_applied"]) or None,
            "planned_changes": "; ".join(entry.get("planned_changes") or ()) or None,
            "applied_changes": "; ".join(entry.get("applied_changes") or ()) or None,
            "cannot_fix": "; ".join(entry.get("cannot_fix") or ()) or None,
            "also_changes": ", ".join(entry.get("also_changes") or ()) or None,
            "fqdn": (entry.get("server") or {}).get("fqdn"),
            "exchange_version": (entry.get("server") or {}).get("version"),
            "gathered_at": entry.get("gathered_at"),
        })
        case = _add_case(suite, host, AUDIT_CASE, counters, seconds)
        if entry["status"] != STATUS_OK:
            counters["errors"] += 1
            error = ET.SubElement(case, "error", {"type": entry["status"], "message": xml_text(entry["error"])})
            # Most errors already start with the host's name.
            text = entry["error"] if entry["error"].startswith(host + ": ") else "%s: %s" % (host, entry["error"])
            error.text = xml_text(text)
        by_id: dict = {}
        for finding in entry["findings"]:
            by_id.setdefault(finding["id"], []).append(finding)
        for check in server_checks:
            if not entry["audited"]:
                case = _add_case(suite, host, _case_name(check), counters)
                counters["skipped"] += 1
                ET.SubElement(case, "skipped", {"message": "not evaluated: host %s" % entry["status"]})
            else:
                _check_case(suite, host, check, by_id.pop(check["id"], []), counters, fail_on)
        for check_id, findings in sorted(by_id.items()):  # ids this catalogue does not know (newer producer)
            _check_case(suite, host, {"id": check_id, "name": findings[0].get("name") or check_id, "title": findings[0]["title"]},
                        findings, counters, fail_on)
        _close_suite(suite, counters, totals)

    suite, counters = _suite(root, FLEET_SUITE, timestamp)
    not_evaluated = [entry["host"] for entry in report["hosts"] if entry["status"] != STATUS_OK]
    _properties(suite, {"hosts_considered": report["fleet"]["hosts_considered"],
                        "hosts_not_evaluated": ", ".join(not_evaluated) or None})
    fleet_by_id: dict = {}
    for finding in report["fleet"]["findings"]:
        fleet_by_id.setdefault(finding["id"], []).append(finding)
    for check in fleet_checks:
        _check_case(suite, FLEET_SUITE, check, fleet_by_id.pop(check["id"], []), counters, fail_on)
    for check_id, findings in sorted(fleet_by_id.items()):
        _check_case(suite, FLEET_SUITE, {"id": check_id, "name": findings[0].get("name") or check_id, "title": findings[0]["title"]},
                    findings, counters, fail_on)
    _close_suite(suite, counters, totals)

    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _seconds(elapsed))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# ---------------------------------------------------------------------------------------------
# summary.md
# ---------------------------------------------------------------------------------------------

_STATUS_LABEL = {STATUS_OK: "audited", STATUS_FAILED: "FAILED", STATUS_UNREACHABLE: "UNREACHABLE"}


def _top(findings: list) -> str:
    """Every critical and warning finding, most severe first, never cut: a reason left out is one nobody fixes."""
    active = [f for f in findings if not f.get("exemption") and f["severity"] in _FAILING_SEVERITIES]
    if not active:
        return "none"
    return "<br>".join("**%s** %s: %s" % (md(f["id"]), md(f["severity"]), md(f["title"])) for f in active)


def _changed(entry: Mapping, dry_run: bool) -> str:
    if entry.get("changed_unknown"):
        return "**unknown**"
    if dry_run:
        return "dry run: %d planned" % len(entry.get("planned_changes") or ()) if entry.get("planned_changes") else "no"
    if entry.get("changed") is None:
        return "-"
    return "yes" if entry["changed"] else "no"


def _host_order(entry: Mapping):
    counts = entry["counts"]
    return (entry["status"] == STATUS_OK, entry["compliant"], -counts["critical"], -counts["warning"], entry["host"])


def render_markdown(report: Mapping) -> str:
    totals = report["totals"]
    lines = [
        "# Hybrid readiness report",
        "",
        "**Result: %s**%s (fail on: %s) | mode: %s | generated %s | %s %s" % (
            "compliant" if report["compliant"] else "NOT COMPLIANT",
            " - **broken**: not every host was judged (see Unreachable or failed hosts)" if report["result"] == RESULT_BROKEN else "",
            md(report["fail_on"]),
            md(report["mode"]) + (" (**dry run**: check mode, nothing was changed)" if report.get("dry_run") else ""),
            md(report["generated_at"]), COLLECTION, md(report["collection"].get("version") or "")),
        "",
        "| Hosts | Audited | Failed | Unreachable | Changed | Changed: unknown | Not compliant | Critical | Warning | Info | Exempt |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d |" % (
            totals["hosts"], totals["ok"], totals["failed"], totals["unreachable"], totals["changed"],
            totals.get("changed_unknown", 0), totals["non_compliant_hosts"],
            totals["findings"]["critical"], totals["findings"]["warning"], totals["findings"]["info"], totals["findings"]["exempted"]),
        "",
        "## Servers",
        "",
    ]
    if report["hosts"]:
        lines += ["| Server | Status | Compliant | Changed | Critical | Warning | Info | Findings |",
                  "|---|---|---|---|---:|---:|---:|---|"]
        for entry in sorted(report["hosts"], key=_host_order):
            counts = entry["counts"]
            if entry["audited"]:
                top = _top(entry["findings"])
            else:
                top = "not audited: %s" % md(entry["error"])
            lines.append("| %s | %s | %s | %s | %d | %d | %d | %s |" % (
                md(entry["host"]), _STATUS_LABEL[entry["status"]], "yes" if entry["compliant"] else "**no**",
                _changed(entry, report.get("dry_run")), counts["critical"], counts["warning"], counts["info"], top))
    else:
        lines.append("No hosts were in the run.")
    if report["mode"] == "enforce":
        title = "Planned changes (dry run: check mode, nothing was changed)" if report.get("dry_run") else "Applied changes"
        key = "planned_changes" if report.get("dry_run") else "applied_changes"
        lines += ["", "## %s" % title, ""]
        changes = [entry for entry in report["hosts"] if entry.get(key)]
        lines += ["- **%s**: %s%s" % (md(entry["host"]), md("; ".join(entry[key])),
                                      " - also changes %s (organisation-wide send connector)" % md(", ".join(entry["also_changes"]))
                                      if entry.get("also_changes") else "") for entry in changes] or ["None."]
        unfixable = [entry for entry in report["hosts"] if entry.get("cannot_fix")]
        if unfixable:
            lines += ["", "## Not compliant, and enforcement cannot fix it", "",
                      "Not counted as failed hosts (the rollout goes on past them); each needs what is named here first:", ""]
            lines += ["- **%s**: %s" % (md(entry["host"]), md("; ".join(entry["cannot_fix"]))) for entry in unfixable]
    errors = [entry for entry in report["hosts"] if entry["status"] != STATUS_OK]
    lines += ["", "## Unreachable or failed hosts", ""]
    if errors:
        lines += ["- **%s** (%s): %s" % (md(entry["host"]), entry["status"], md(entry["error"])) for entry in errors]
        unknown = [entry for entry in errors if entry.get("changed_unknown")]
        if unknown:
            lines += ["", "Changed: **unknown** - the mutating round trip was sent but gave no usable answer; these steps may "
                          "have been applied (the next run plans from what the servers hold):", ""]
            lines += ["- **%s**: %s" % (md(entry["host"]), md("; ".join(entry["may_have_applied"]))) for entry in unknown]
    else:
        lines.append("None: every host was audited.")

    fleet = report["fleet"]
    lines += ["", "## Fleet", "", "Hosts compared: %d." % fleet["hosts_considered"], ""]
    if fleet["findings"]:
        for finding in fleet["findings"]:
            lines.append("- **%s** %s: %s" % (md(finding["id"]), md(finding["severity"]), md(finding["title"])))
            for group in (finding.get("evidence") or {}).get("groups") or ():
                certs = "; ".join("%s issued by %s" % (md(c.get("subject")), md(c.get("issuer"))) for c in group.get("certificates") or ())
                hosts = group.get("hosts") or []
                shown = ", ".join(md(h) for h in hosts[:20]) + (" and %d more" % (len(hosts) - 20) if len(hosts) > 20 else "")
                lines.append("  - %d host(s): %s (%s)" % (len(hosts), certs, shown))
    else:
        lines.append("No fleet findings: the hybrid transport servers present the same hybrid certificate.")

    lines += ["", "## Findings by check", ""]
    affected: dict = {}
    for entry in report["hosts"]:
        for finding in entry["findings"]:
            if not finding.get("exemption"):
                affected.setdefault(finding["id"], set()).add(entry["host"])
    for finding in fleet["findings"]:
        if not finding.get("exemption"):
            affected.setdefault(finding["id"], set()).add(FLEET_SUITE)
    checks = {check["id"]: check for check in report["checks"]}
    if affected:
        lines += ["| Check | Severity (max) | Title | Hosts | Auto-fix | Reference |", "|---|---|---|---:|---|---|"]
        for check_id in sorted(affected, key=lambda cid: (_catalogue.RANK.get(checks.get(cid, {}).get("severity"), 9), cid)):
            check = checks.get(check_id) or {"severity": "?", "title": check_id, "auto_fix": "?", "references": []}
            reference = check["references"][0] if check.get("references") else ""
            lines.append("| %s | %s | %s | %d | %s | %s |" % (
                md(check_id), md(check["severity"]), md(check["title"]), len(affected[check_id]), md(check["auto_fix"]),
                "[docs](%s)" % reference if reference else ""))
    else:
        lines.append("No findings.")
    lines += ["", "Finding catalogue: docs/findings.md. Machine-readable report: report.json; per-check results: junit.xml.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _write_atomic(path: str, data: bytes | Iterable[bytes]) -> None:
    directory = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(handle, "wb") as output:
            for chunk in [data] if isinstance(data, bytes) else data:
                output.write(chunk)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def write_reports(directory: str, run: Mapping, facts_of: Callable[[str], Mapping | None] | None = None) -> dict:
    """Build the report once and write report.json, junit.xml and summary.md into directory (created when
    missing; each file replaced atomically). Returns {"json": path, "junit": path, "markdown": path,
    "compliant": bool, "report": the report.json document}.

    With facts_of, report.json gets each audited host's facts from facts_of(host) while it is written, and
    the run's entries need to hold only what the rest of the report reads (slim_entry()) plus its
    "fleet_findings": a large fleet's facts are then never all in memory. The returned document has no
    facts then."""
    report = build_report(dict(run, include_facts=False) if facts_of is not None else run)
    directory = os.path.abspath(os.path.expanduser(str(directory)))
    os.makedirs(directory, exist_ok=True)
    paths = {kind: os.path.join(directory, name) for kind, name in FILE_NAMES.items()}
    _write_atomic(paths["json"], render_json(report).encode("utf-8") if facts_of is None else _render_json_chunks(report, facts_of))
    _write_atomic(paths["junit"], render_junit(report))
    _write_atomic(paths["markdown"], render_markdown(report).encode("utf-8"))
    return dict(paths, compliant=report["compliant"], report=report)


def rollout_stop(report: Mapping, pending, batch, max_fail_percentage: int | None) -> str | None:
    """Why a serial play must stop after this batch (the report task then fails), or None.

    pending: the play's hosts without a result yet (the next batches); batch: this batch's hosts. More than
    max_fail_percentage of the batch failed and a batch follows: the next batch must change nothing. A host
    that only needs what enforcement cannot do (cannot_fix), or in a dry run would change, is not failed.
    After the last batch of an enforce run: the hosts enforcement cannot fix, so that the run does not end
    as if it had succeeded."""
    entries = {entry["host"]: entry for entry in report["hosts"]}
    pending = list(pending)
    batch = [host for host in batch or () if host in entries]
    if pending and batch and max_fail_percentage is not None:
        failed = [host for host in batch if entries[host]["status"] != STATUS_OK
                  or not (entries[host]["compliant"] or entries[host]["cannot_fix"] or report.get("dry_run"))]
        if failed and len(failed) * 100 > max_fail_percentage * len(batch):
            return ("the rollout stops here: %d of the %d hosts of this batch failed (%s), more than max_fail_percentage %d%%; "
                    "the %d hosts of the next batches (%s) were not contacted" % (
                        len(failed), len(batch), ", ".join(failed), max_fail_percentage, len(pending),
                        ", ".join(pending[:10]) + (" and %d more" % (len(pending) - 10) if len(pending) > 10 else "")))
    if not pending and report["mode"] == "enforce":
        unfixable = [entry for entry in report["hosts"] if entry["cannot_fix"]]
        if unfixable:
            return "%d hosts are not compliant and enforcement cannot fix them: %s" % (
                len(unfixable), " ".join("%s: %s." % (entry["host"], "; ".join(entry["cannot_fix"])) for entry in unfixable))
    return None


def collection_version(root: str) -> str | None:
    """The version of the collection whose files are at root: MANIFEST.json's collection_info.version when
    installed (ansible-galaxy collection install), else galaxy.yml's version (a source tree); None when
    neither says. galaxy.yml is read for its one top-level "version:" line, so that no YAML parser is needed."""
    try:
        with open(os.path.join(root, "MANIFEST.json"), encoding="utf-8") as handle:
            version = (json.load(handle).get("collection_info") or {}).get("version")
        if isinstance(version, str) and version:
            return version
    except (OSError, ValueError, AttributeError):
        pass
    try:
        with open(os.path.join(root, "galaxy.yml"), encoding="utf-8") as handle:
            for line in handle:
                match = re.match(r"""version:\s*['"]?([^'"\s#]+)""", line)
                if match:
                    return match.group(1)
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------------------
# Host entries and host records
# ---------------------------------------------------------------------------------------------

NO_RESULT = "no result from this host in this run"
RECORDS_DIR = "hosts"
RECORD_SCHEMA = "hybridmail.exchange/host-record"
_UNSAFE_FILE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")


def entry_from_result(result, host: str, mode: str, options: _findings.Options, exemptions, dry_run: bool = False) -> dict:
    """The run's entry for one host (see the module docstring) from its module result: certificate_info's
    (facts at the top level) or an enforcement module's (facts under "facts"), an unreachable or failed
    task, or nothing at all. In enforce mode the entry lists the steps as planned_changes (dry_run: check
    mode, nothing was sent) or as applied_changes (those the server confirmed)."""
    if not isinstance(result, Mapping):
        return {"error": NO_RESULT}
    if result.get("unreachable"):
        return {"unreachable": True, "error": result.get("msg") or "host unreachable"}
    facts = result.get("facts") if isinstance(result.get("facts"), Mapping) else result
    # An audit that gathered its facts has not failed, even when the plan it computed is blocked: the
    # findings say why. In enforce mode a blocked or failed change is an error of that host.
    failed = result.get("failed") and not (mode == "audit" and "certificates" in facts)
    entry = {"changed": bool(result.get("changed")) and mode == "enforce", "error": result.get("msg") if failed else None}
    if result.get("changed_unknown"):
        entry.update(changed=None, may_have_applied=[str(step) for step in result.get("may_have_applied") or ()])
    if mode == "enforce":
        steps = [step for step in result.get("steps") or () if isinstance(step, Mapping)]
        key, status = ("planned_changes", "planned") if dry_run else ("applied_changes", "applied")
        described = [str(step.get("description")) for step in steps if step.get("status") == status]
        if described:
            entry[key] = described
        # A pin of an organisation-wide send connector changes what its other source servers present too,
        # whichever batch of a rollout they are in: the change counts for them as well.
        others = sorted({str(server) for step in steps if step.get("status") in (status, "unknown")
                         for server in step.get("shared_with") or ()})
        if others:
            entry["also_changes"] = others
    if "certificates" not in facts:
        entry["error"] = entry["error"] or "the module returned no certificate facts"
        return entry
    entry["facts"] = facts
    findings = _compliance.apply_exemptions(_findings.server_findings(facts, options), exemptions, host)
    entry["findings"] = [finding.to_dict() for finding in findings]
    return entry


def fleet_certificates(entry: Mapping) -> dict:
    """What the fleet findings need of one host's entry: its hybrid certificates when it was audited
    without error ({} otherwise, which the fleet findings skip)."""
    facts = entry.get("facts") if isinstance(entry, Mapping) else None
    if not isinstance(facts, Mapping) or entry.get("error") or entry.get("unreachable"):
        return {}
    return _findings.hybrid_certificates(facts)


def slim_entry(entry: Mapping) -> dict:
    """The entry without the facts the reports do not read outside report.json's "facts" (see write_reports)."""
    facts = entry.get("facts")
    if not isinstance(facts, Mapping):
        return dict(entry)
    return dict(entry, facts={key: facts.get(key) for key in ("server", "hybrid_fqdns", "gathered_at")})


def finding_lines(findings) -> list[str]:
    """One line per finding that is not exempted: "critical HM101: <title>"."""
    return ["%s %s: %s" % (f["severity"], f["id"], f["title"]) for f in findings if not f.get("exemption")]


def host_summary(host: str, entry: Mapping, fail_on: str) -> dict:
    """What a play needs to know about one host: compliant, status, error, counts, findings (one line each),
    cannot_fix (what enforcement cannot do there)."""
    judged = _host_entry(host, entry, fail_on, include_facts=False)
    return _clean({"compliant": judged["compliant"], "status": judged["status"], "error": judged["error"],
                   "counts": judged["counts"], "findings": finding_lines(judged["findings"]), "cannot_fix": judged["cannot_fix"]})


def failing_findings(findings, fail_on: str) -> list:
    """The findings (dicts) that make a host miss fail_on: not exempt, at least as severe as fail_on."""
    if fail_on == "never":
        return []
    threshold = _catalogue.RANK[fail_on]
    return [f for f in findings if not f.get("exemption") and _catalogue.RANK.get(f.get("severity"), 9) <= threshold]


def cannot_fix(entry: Mapping, fail_on: str, blockers=(), planned: bool = False) -> list:
    """What keeps an enforced host from meeting fail_on that enforcement cannot change, one line each; empty
    when the host meets it, failed, or has findings enforcement should have fixed (which is a failure).

    blockers: the interlock's reasons for refusing the plan (nothing was sent). planned: check mode, where the findings
    are those before the plan."""
    if entry.get("error") or entry.get("unreachable") or entry.get("may_have_applied"):
        return []
    failing = failing_findings(entry.get("findings") or (), fail_on)
    if not failing:
        return []
    if blockers:
        return [str(text) for text in blockers]
    if planned:
        # Before the plan runs, auto_fix false only means "not promised" (a pin of a shared send connector is
        # never promised): a host with planned changes is judged after enforcement, one without has no fix.
        return [] if entry.get("planned_changes") else finding_lines(failing)
    unfixable = [f for f in failing if not f.get("auto_fix")]
    return finding_lines(unfixable) if len(unfixable) == len(failing) else []


def record_path(directory: str, host: str) -> str:
    """<directory>/hosts/<host>.json; a host name that is not a safe file name gets a hash of itself."""
    name = _UNSAFE_FILE_CHARACTERS.sub("_", host)
    if name != host or name.startswith("."):
        name = "%s-%s" % (name.lstrip("."), hashlib.sha256(host.encode("utf-8")).hexdigest()[:12])
    return os.path.join(os.path.abspath(os.path.expanduser(str(directory))), RECORDS_DIR, name + ".json")


def write_host_record(directory: str, host: str, entry: Mapping) -> dict:
    """Write one host's entry (facts and findings included) where the run's report reads it back, so that
    the play itself carries only a summary of each host. Returns {"path", "record_id"}: the report accepts
    the file only with that id, so a record another run wrote since is never taken for this run's."""
    path = record_path(directory, host)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record_id = uuid.uuid4().hex
    document = {"schema": RECORD_SCHEMA, "version": VERSION, "host": host, "record_id": record_id, "entry": _clean(entry)}
    _write_atomic(path, json.dumps(document, ensure_ascii=False, default=str).encode("utf-8"))
    return {"path": path, "record_id": record_id}


def read_host_record(path: str, record_id: str, host: str) -> dict:
    """The entry write_host_record() wrote for host with record_id. Raises ReportError."""
    try:
        with open(path, "rb") as handle:
            document = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError("host %s: cannot read its record %s: %s" % (host, path, exc)) from None
    if not isinstance(document, Mapping) or document.get("schema") != RECORD_SCHEMA or not isinstance(document.get("entry"), Mapping):
        raise ReportError("host %s: %s is not a host record" % (host, path))
    if document.get("host") != host or document.get("record_id") != record_id:
        raise ReportError("host %s: its record %s was replaced by another run (of %s) before this report read it"
                          % (host, path, document.get("host")))
    return dict(document["entry"])

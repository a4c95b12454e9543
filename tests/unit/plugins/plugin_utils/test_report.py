"""Fleet reports (plugins/plugin_utils/_report.py): report.json against its schema, junit.xml, summary.md."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET

import jsonschema
import pytest
import yaml

import hybrid_world as world
from hybrid_world import NOW

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _catalogue, _compliance, _findings, _report

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
SCHEMA_PATH = os.path.join(REPO_ROOT, "docs", "report.schema.json")
HOSTILE = ("Q3 \"web\" 'cert' | pipe\nnew line $(Remove-Item C:\\ -Recurse) `code` <b>bold</b> [x](http://evil.example) "
           "![i](http://t) \u00fcber \u010cechy ]]> &amp; *em* \x00\x1b\x07 \ud800")


@pytest.fixture(scope="module")
def schema():
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        document = json.load(handle)
    jsonschema.Draft202012Validator.check_schema(document)
    return document


def validate(report, schema):
    jsonschema.Draft202012Validator(schema).validate(json.loads(_report.render_json(report)))


def entry(server: world.Server, options=None, **extra):
    facts = server.facts()
    return dict({"facts": facts, "findings": [f.to_dict() for f in _findings.server_findings(facts, options)], "error": None,
                 "unreachable": False, "changed": False}, **extra)


def hostile_server() -> world.Server:
    server = world.kb2888788("EX05")
    server.certificates[-1].friendly_name = HOSTILE
    server.send_connectors[0]["Identity"] = HOSTILE
    return server


@pytest.fixture(scope="module")
def run():
    servers = ["EX01", "EX02", "EX05"]
    return {
        "hosts": {
            "ex01": entry(world.kb2888788("EX01")),
            "ex02": entry(world.healthy("EX02", servers=servers)),
            "ex03": {"facts": None, "findings": [], "error": "winrm: connection timed out after 30 s", "unreachable": True, "changed": None},
            "ex04": {"facts": None, "findings": [], "error": "Get-ExchangeServer failed: " + HOSTILE, "unreachable": False},
            "ex05": entry(hostile_server()),
        },
        "fail_on": "critical",
        "mode": "audit",
        "options": {"expiry_warning_days": 60, "expiry_critical_days": 30, "min_key_size": 2048},
        "generated_at": NOW,
        "collection_version": "0.1.0",
    }


@pytest.fixture(scope="module")
def report(run):
    return _report.build_report(run)


# ---------------------------------------------------------------------------------------------
# report.json
# ---------------------------------------------------------------------------------------------


def test_report_validates_against_the_schema(report, schema):
    validate(report, schema)
    assert report["schema"] == "hybridmail.exchange/report" and report["version"] == 1


@pytest.mark.parametrize("changes", [{"include_facts": False}, {"fail_on": "never"}, {"fail_on": "warning", "mode": "enforce"}, {"hosts": {}}])
def test_report_variants_validate(run, schema, changes):
    validate(_report.build_report(dict(run, **changes)), schema)


def test_report_totals_and_statuses(report):
    by_host = {h["host"]: h for h in report["hosts"]}
    assert [h["host"] for h in report["hosts"]] == ["ex01", "ex02", "ex03", "ex04", "ex05"]
    assert {h: e["status"] for h, e in by_host.items()} == {"ex01": "ok", "ex02": "ok", "ex03": "unreachable", "ex04": "failed", "ex05": "ok"}
    assert report["totals"]["hosts"] == 5 and report["totals"]["ok"] == 3
    assert report["totals"]["unreachable"] == 1 and report["totals"]["failed"] == 1
    assert report["totals"]["non_compliant_hosts"] == 4  # ex01, ex05 (critical findings), ex03, ex04 (not audited)
    assert report["compliant"] is False
    assert by_host["ex02"]["compliant"] and by_host["ex02"]["findings"] == []
    assert by_host["ex03"]["error"] == "winrm: connection timed out after 30 s" and not by_host["ex03"]["audited"]
    assert report["totals"]["findings"]["critical"] == sum(h["counts"]["critical"] for h in report["hosts"]) + report["fleet"]["counts"]["critical"]


def test_fail_on_never_is_compliant_but_still_reports_errors(run):
    report = _report.build_report(dict(run, fail_on="never"))
    assert report["compliant"] is True and report["totals"]["unreachable"] == 1


def test_a_host_without_facts_or_error_is_a_failure_not_silence(run):
    report = _report.build_report({"hosts": {"ex09": {"facts": None}}, "generated_at": NOW})
    assert report["hosts"][0]["status"] == "failed" and report["hosts"][0]["error"] == "no facts were returned for this host"
    assert report["compliant"] is False


def test_fleet_findings_are_computed_from_audited_hosts(run):
    servers = ["EX01", "EX02"]
    other = world.public_cert(world.HYBRID_NAME, subject="CN=mail.contoso.com, O=Branch, C=US")
    report = _report.build_report(dict(run, hosts={
        "ex01": entry(world.healthy("EX01", servers=servers)),
        "ex02": entry(world.healthy("EX02", hybrid_cert=other, servers=servers)),
        "ex03": run["hosts"]["ex03"],
    }))
    assert [f["id"] for f in report["fleet"]["findings"]] == ["HM501"]
    assert report["fleet"]["hosts_considered"] == 2 and report["compliant"] is False  # ex03 unreachable


def test_findings_can_be_rebuilt_from_report_json(report):
    stored = json.loads(_report.render_json(report))
    for host in stored["hosts"]:
        if host["facts"] is not None:
            rebuilt = [f.to_dict() for f in _findings.server_findings(host["facts"])]
            assert rebuilt == host["findings"]


def test_finding_objects_and_dicts_are_both_accepted(run):
    facts = world.kb2888788().facts()
    objects = _report.build_report({"hosts": {"ex01": {"facts": facts, "findings": _findings.server_findings(facts)}}, "generated_at": NOW})
    dicts = _report.build_report({"hosts": {"ex01": {"facts": facts, "findings": [f.to_dict() for f in _findings.server_findings(facts)]}},
                                  "generated_at": NOW})
    assert objects == dicts


@pytest.mark.parametrize("bad, message", [
    ({"hosts": []}, "'hosts' mapping"),
    ({"hosts": {}, "fail_on": "error"}, "fail_on"),
    ({"hosts": {"ex01": "nope"}}, "host ex01"),
    ({"hosts": {"ex01": {"facts": {}, "findings": [{"id": "HM101"}]}}}, "host ex01: finding lacks severity, title"),
])
def test_bad_runs_are_refused_with_a_message(bad, message):
    with pytest.raises(_report.ReportError, match=re.escape(message)):
        _report.build_report(bad)


def test_json_output_is_valid_utf8_with_hostile_text(report):
    text = _report.render_json(report)
    text.encode("utf-8")  # no lone surrogate survives
    by_host = {h["host"]: h for h in json.loads(text)["hosts"]}
    assert "\u010cechy" in by_host["ex04"]["error"] and "\ufffd" in by_host["ex04"]["error"]
    assert "$(Remove-Item" in by_host["ex05"]["findings"][0]["evidence"]["connectors"][0]["identity"]


# ---------------------------------------------------------------------------------------------
# junit.xml
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def junit(report):
    return ET.fromstring(_report.render_junit(report))


def _suite(junit, name):
    return next(s for s in junit.findall("testsuite") if s.get("name") == name)


def _case(suite, prefix):
    return next(c for c in suite.findall("testcase") if c.get("name").startswith(prefix))


def test_junit_has_a_suite_per_host_and_a_fleet_suite(junit):
    assert [s.get("name") for s in junit.findall("testsuite")] == ["ex01", "ex02", "ex03", "ex04", "ex05", "fleet"]
    for suite in junit.findall("testsuite")[:-1]:
        names = [c.get("name") for c in suite.findall("testcase")]
        assert names[0] == "audit"
        assert names[1:] == ["%s %s: %s" % (c.id, c.name, c.title) for c in _catalogue.SERVER_CHECKS]  # passing ones too
    fleet = _suite(junit, "fleet")
    assert [c.get("name").split()[0] for c in fleet.findall("testcase")] == [c.id for c in _catalogue.FLEET_CHECKS]


def test_junit_counts_match_the_testcases(junit):
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in junit.findall("testsuite"):
        cases = suite.findall("testcase")
        counted = {
            "tests": len(cases),
            "failures": sum(1 for c in cases if c.find("failure") is not None),
            "errors": sum(1 for c in cases if c.find("error") is not None),
            "skipped": sum(1 for c in cases if c.find("skipped") is not None),
        }
        assert {key: int(suite.get(key)) for key in counted} == counted, suite.get("name")
        for key in totals:
            totals[key] += counted[key]
    # The Jenkins/xunit JUnit schema has no skipped attribute on <testsuites> (issue 14.4).
    assert junit.get("skipped") is None
    del totals["skipped"]
    assert {key: int(junit.get(key)) for key in totals} == totals


def test_junit_failure_names_the_kb_finding(junit, report):
    case = _case(_suite(junit, "ex01"), "HM101 kb2888788-ambiguous-smtp-certificate")
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "critical"
    kb = next(f for f in report["hosts"][0]["findings"] if f["id"] == "HM101")
    assert failure.get("message") == kb["title"]
    assert "Remediation:" in failure.text and _catalogue.KB_2888788 in failure.text and kb["subject"] in failure.text
    assert _suite(junit, "ex01").find("properties/property[@name='compliant']").get("value") == "false"


def test_junit_passing_checks_are_empty_testcases(junit):
    suite = _suite(junit, "ex02")
    assert int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0
    assert all(len(case) == 0 for case in suite.findall("testcase"))


@pytest.mark.parametrize("host, kind", [("ex03", "unreachable"), ("ex04", "failed")])
def test_junit_unreachable_and_failed_hosts_are_errors(junit, host, kind):
    suite = _suite(junit, host)
    error = _case(suite, "audit").find("error")
    assert error is not None and error.get("type") == kind
    assert int(suite.get("errors")) == 1
    assert all(c.find("skipped") is not None for c in suite.findall("testcase")[1:])
    assert _suite(junit, "fleet").find("properties/property[@name='hosts_not_evaluated']").get("value") == "ex03, ex04"


def test_junit_info_findings_pass_with_details_and_exempt_ones_are_skipped():
    server = world.healthy()
    server.events = [world.event_2004(world.UNTRUSTED_ROOT_TEXT)]  # info: no cause remains
    facts = server.facts()
    findings = _compliance.apply_exemptions(_findings.server_findings(world.kb2888788().facts()),
                                            [{"id": "HM402", "reason": "queue drains after the change window"}])
    report = _report.build_report({"hosts": {
        "info": {"facts": facts, "findings": _findings.server_findings(facts)},
        "exempt": {"facts": world.kb2888788().facts(), "findings": findings},
    }, "generated_at": NOW})
    junit = ET.fromstring(_report.render_junit(report))
    info_case = _case(_suite(junit, "info"), "HM401")
    assert info_case.find("failure") is None and "UntrustedRoot" in info_case.find("system-out").text
    skipped = _case(_suite(junit, "exempt"), "HM402").find("skipped")
    assert skipped is not None and skipped.get("message") == "exempt: queue drains after the change window"


def test_junit_survives_hostile_strings(junit):
    case = _case(_suite(junit, "ex05"), "HM101")
    assert "$(Remove-Item" in case.find("failure").text and "]]>" in case.find("failure").text
    error = _case(_suite(junit, "ex04"), "audit").find("error")
    assert "\\x00\\x1b\\x07" in error.get("message") and "\n" in error.get("message")  # control characters made visible


def test_junit_keeps_findings_of_checks_it_does_not_know():
    report = _report.build_report({"hosts": {"ex01": {"facts": world.healthy().facts(), "findings": [
        {"id": "HM777", "name": "from-a-newer-release", "severity": "warning", "title": "new check"}]}}, "generated_at": NOW})
    junit = ET.fromstring(_report.render_junit(report))
    assert _case(_suite(junit, "ex01"), "HM777 HM777: new check").find("failure") is None  # a warning under fail_on critical
    report = dict(report, fail_on="warning")
    junit = ET.fromstring(_report.render_junit(report))
    assert _case(_suite(junit, "ex01"), "HM777 HM777: new check").find("failure") is not None


def test_junit_warnings_below_fail_on_pass_with_their_details_and_fqdn_hosts_keep_one_class():
    """Issue 14.4: a <failure> only for what fails the run under fail_on; Jenkins splits classname at its last
    dot (package.class), so a host's FQDN must not have dots there; the time is the host's measured one."""
    facts = world.healthy().facts()
    report = _report.build_report({"hosts": {"ex01.contoso.com": {"facts": facts, "duration_seconds": 1.25, "findings": [
        {"id": "HM777", "name": "from-a-newer-release", "severity": "warning", "title": "new check"}]}},
        "generated_at": NOW, "fail_on": "critical"})
    junit = ET.fromstring(_report.render_junit(report))
    suite = _suite(junit, "ex01.contoso.com")
    case = _case(suite, "HM777 HM777: new check")
    assert case.find("failure") is None and "new check" in case.find("system-out").text
    assert {c.get("classname") for c in suite.findall("testcase")} == {"ex01_contoso_com"}
    assert suite.get("time") == "1.250" and _case(suite, "audit").get("time") == "1.250" and junit.get("time") == "1.250"
    assert int(junit.get("failures")) == 0 and junit.get("skipped") is None


# ---------------------------------------------------------------------------------------------
# summary.md
# ---------------------------------------------------------------------------------------------


def _cells(line: str) -> list:
    """Split a Markdown table row at pipes that are not backslash-escaped."""
    cells, current, escaped = [], "", False
    for char in line.strip()[1:-1]:
        if char == "|" and not escaped:
            cells.append(current)
            current = ""
        else:
            current += char
        escaped = char == "\\" and not escaped
    return cells + [current]


@pytest.fixture(scope="module")
def markdown(report):
    return _report.render_markdown(report)


def test_markdown_tables_keep_their_shape(markdown):
    lines = markdown.splitlines()
    for header_index, line in enumerate(lines):
        if line.startswith("| Server |"):
            break
    width = len(_cells(lines[header_index]))
    rows = []
    for line in lines[header_index + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    assert len(rows) == 5
    assert all(len(_cells(row)) == width for row in rows)


def test_markdown_lists_the_result_unreachable_hosts_and_top_findings(markdown):
    assert "**Result: NOT COMPLIANT** - **broken**: not every host was judged (see Unreachable or failed hosts) (fail on: critical)" in markdown
    section = markdown.split("## Unreachable or failed hosts")[1].split("##")[0]
    assert "**ex03** (unreachable): winrm: connection timed out after 30 s" in section
    assert "**ex04** (failed)" in section
    row = next(line for line in markdown.splitlines() if line.startswith("| ex01 |"))
    assert "**HM101** critical: KB 2888788" in row and "| **no** |" in row
    assert "| ex02 | audited | yes | no | 0 | 0 | 0 | none |" in markdown


def test_markdown_escapes_hostile_text(markdown):
    for line in markdown.splitlines():
        unescaped = re.sub(r"\\.", "", line.replace("[docs](https://", ""))  # our own links
        assert "<b>" not in unescaped and "](" not in unescaped and "`" not in unescaped
        assert "\x00" not in line and "\x1b" not in line
    assert "\\| pipe new line \\$\\(Remove" in markdown  # the newline became a space, the pipe is escaped
    assert "\u00fcber \u010cechy" in markdown


@pytest.mark.parametrize("text, expected", [
    ("a|b", "a\\|b"),
    ("line1\nline2\r\n\tline3", "line1 line2 line3"),
    ("[x](javascript:alert(1))", "\\[x\\]\\(javascript:alert\\(1\\)\\)"),
    ("<script>", "\\<script\\>"),
    ("*a* _b_ ~c~ $d$ &amp; !e", "\\*a\\* \\_b\\_ \\~c\\~ \\$d\\$ \\&amp; \\!e"),
    ("back\\slash", "back\\\\slash"),
    ("mail.contoso.com", "mail.contoso.com"),
])
def test_md_escape(text, expected):
    assert _report.md(text) == expected


def test_markdown_fleet_section_and_checks(run):
    servers = ["EX01", "EX02"]
    other = world.public_cert(world.HYBRID_NAME, subject="CN=mail.contoso.com, O=Branch | Office, C=US")
    report = _report.build_report({"hosts": {
        "ex01": entry(world.healthy("EX01", servers=servers)),
        "ex02": entry(world.healthy("EX02", hybrid_cert=other, servers=servers)),
    }, "generated_at": NOW})
    markdown = _report.render_markdown(report)
    fleet = markdown.split("## Fleet")[1].split("## Findings by check")[0]
    assert "**HM501** warning" in fleet and "O=Branch \\| Office" in fleet and "1 host(s)" in fleet
    assert re.search(r"\| HM501 \| warning \| .* \| 1 \| no \| \[docs\]\(https://", markdown)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def test_write_reports_writes_three_files_atomically(run, tmp_path, schema):
    directory = tmp_path / "reports" / "run-1"
    paths = _report.write_reports(str(directory), run)
    assert paths["compliant"] is False
    assert {os.path.basename(paths[k]) for k in ("json", "junit", "markdown")} == {"report.json", "junit.xml", "summary.md"}
    assert sorted(os.listdir(directory)) == ["junit.xml", "report.json", "summary.md"]  # no temporary files left
    with open(paths["json"], encoding="utf-8") as handle:
        jsonschema.Draft202012Validator(schema).validate(json.load(handle))
    ET.parse(paths["junit"])
    with open(paths["markdown"], encoding="utf-8") as handle:
        assert handle.read().startswith("# Hybrid readiness report")
    # a second run replaces the files
    again = _report.write_reports(str(directory), dict(run, hosts={"ex02": run["hosts"]["ex02"]}))
    assert again["compliant"] is True
    with open(paths["json"], encoding="utf-8") as handle:
        assert [h["host"] for h in json.load(handle)["hosts"]] == ["ex02"]


def test_report_json_written_host_by_host_is_the_same_document(run, tmp_path, schema):
    """readiness_report hands write_reports slim entries, the fleet findings and a facts loader: the
    files must be the same as from the whole run (bar generated_at), with hostile strings intact."""
    whole = dict(run, generated_at="2026-11-23T12:00:00Z")
    slim = dict(whole, hosts={host: _report.slim_entry(entry) for host, entry in run["hosts"].items()},
                fleet_findings=[f.to_dict() for f in _findings.fleet_findings(
                    {host: _report.fleet_certificates(entry) for host, entry in run["hosts"].items()})])
    loaded = []

    def facts_of(host):
        loaded.append(host)
        return run["hosts"][host]["facts"]

    expected = _report.write_reports(str(tmp_path / "whole"), whole)
    streamed = _report.write_reports(str(tmp_path / "streamed"), slim, facts_of=facts_of)
    assert loaded == ["ex01", "ex02", "ex05"]  # the audited hosts, once each, in report order
    with open(expected["json"], encoding="utf-8") as one, open(streamed["json"], encoding="utf-8") as other:
        text = other.read()
        assert json.loads(text) == json.load(one)
    jsonschema.Draft202012Validator(schema).validate(json.loads(text))
    assert text == _report.render_json(expected["report"])  # the same bytes, indentation included
    for kind in ("junit", "markdown"):
        with open(expected[kind], "rb") as one, open(streamed[kind], "rb") as other:
            assert one.read() == other.read(), kind
    assert all(entry["facts"] is None for entry in streamed["report"]["hosts"])


def test_slim_entries_keep_what_the_summary_reads(run):
    entry = run["hosts"]["ex01"]
    slim = _report.slim_entry(entry)
    assert set(slim["facts"]) == {"server", "hybrid_fqdns", "gathered_at"} and slim["findings"] == entry["findings"]
    assert _report.slim_entry(run["hosts"]["ex03"]) == run["hosts"]["ex03"]
    assert _report.fleet_certificates(run["hosts"]["ex03"]) == {} and _report.fleet_certificates(entry)


# ---------------------------------------------------------------------------------------------
# Host entries from module results, and host records
# ---------------------------------------------------------------------------------------------

OPTIONS = _findings.Options()


def test_an_audit_result_becomes_an_entry_with_findings_even_when_its_plan_was_blocked():
    facts = world.kb2888788("EX01").facts()
    result = {"failed": True, "msg": "EX01: mail.contoso.com has no certificate Exchange Online would trust", "facts": facts}
    audited = _report.entry_from_result(result, "ex01", "audit", OPTIONS, [])
    assert audited["error"] is None and audited["facts"] is facts and audited["changed"] is False
    assert "HM101" in {f["id"] for f in audited["findings"]}
    # In enforce mode the same failure is the host's error.
    assert _report.entry_from_result(result, "ex01", "enforce", OPTIONS, [])["error"] == result["msg"]


@pytest.mark.parametrize("result, expected", [
    (None, {"error": _report.NO_RESULT}),
    ({"unreachable": True, "msg": "ex03: connection failed: refused"}, {"unreachable": True, "error": "ex03: connection failed: refused"}),
    ({"failed": True, "msg": "Task failed: Timed out after 10 second(s)."},
     {"changed": False, "error": "Task failed: Timed out after 10 second(s)."}),
    ({"changed": True}, {"changed": True, "error": "the module returned no certificate facts"}),
])
def test_results_without_facts_become_errors(result, expected):
    assert _report.entry_from_result(result, "ex03", "enforce", OPTIONS, []) == expected


def test_certificate_info_results_carry_their_facts_at_the_top_level():
    facts = world.healthy("EX02").facts()
    assert _report.entry_from_result(facts, "ex02", "audit", OPTIONS, [])["facts"] is facts


def test_exemptions_apply_to_the_host_they_name():
    facts = world.kb2888788("EX01").facts()
    exemptions = _compliance.validate_exemptions([{"id": "HM101", "reason": "change 4711", "hosts": ["ex0*"]}])
    findings = _report.entry_from_result({"facts": facts}, "ex01", "audit", OPTIONS, exemptions)["findings"]
    assert all(f["exemption"] for f in findings if f["id"] == "HM101")
    other = _report.entry_from_result({"facts": facts}, "mx01", "audit", OPTIONS, exemptions)["findings"]
    assert not any(f.get("exemption") for f in other if f["id"] == "HM101")


def test_host_summary_says_what_the_report_says(run):
    report = _report.build_report(run)
    for host_report in report["hosts"]:
        summary = _report.host_summary(host_report["host"], run["hosts"][host_report["host"]], run["fail_on"])
        assert summary == {"compliant": host_report["compliant"], "status": host_report["status"], "error": host_report["error"],
                           "counts": host_report["counts"], "findings": _report.finding_lines(host_report["findings"]),
                           "cannot_fix": host_report["cannot_fix"]}
    assert _report.host_summary("ex01", run["hosts"]["ex01"], "critical")["findings"][0].startswith("critical HM")


def test_a_host_record_round_trips_with_its_id(tmp_path):
    host_entry = entry(hostile_server())
    written = _report.write_host_record(str(tmp_path), "ex05", host_entry)
    assert written["path"] == str(tmp_path / "hosts" / "ex05.json") and re.fullmatch(r"[0-9a-f]{32}", written["record_id"])
    read = _report.read_host_record(written["path"], written["record_id"], "ex05")
    # What the report builds from the record is what it builds from the entry itself.
    assert _report.build_report({"hosts": {"ex05": read}}) == _report.build_report({"hosts": {"ex05": host_entry}}) | {
        "generated_at": _report.build_report({"hosts": {"ex05": read}})["generated_at"]}


def test_a_record_another_run_replaced_is_refused(tmp_path):
    first = _report.write_host_record(str(tmp_path), "ex01", entry(world.kb2888788("EX01")))
    second = _report.write_host_record(str(tmp_path), "ex01", entry(world.healthy("EX01")))
    assert first["path"] == second["path"]
    with pytest.raises(_report.ReportError, match=r"host ex01: its record .* was replaced by another run"):
        _report.read_host_record(first["path"], first["record_id"], "ex01")
    assert _report.read_host_record(second["path"], second["record_id"], "ex01")["facts"]["server"]["name"] == "EX01"


@pytest.mark.parametrize("content, message", [
    (None, "cannot read its record"),
    (b"\xff\xfe not json", "cannot read its record"),
    (b'{"schema": "something else", "entry": {}}', "is not a host record"),
    (b'["a list"]', "is not a host record"),
])
def test_a_missing_or_foreign_record_is_refused(tmp_path, content, message):
    path = tmp_path / "hosts" / "ex01.json"
    if content is not None:
        path.parent.mkdir()
        path.write_bytes(content)
    with pytest.raises(_report.ReportError, match=message):
        _report.read_host_record(str(path), "0" * 32, "ex01")


@pytest.mark.parametrize("host", ["ex01.contoso.com", "EX01", "10.0.0.5", "host with spaces", "../../etc/passwd", ".hidden", "x/y", "\u00fcber"])
def test_record_paths_stay_in_the_records_directory_and_are_distinct(tmp_path, host):
    path = _report.record_path(str(tmp_path), host)
    assert os.path.dirname(path) == str(tmp_path / "hosts")
    assert not os.path.basename(path).startswith(".")
    assert path != _report.record_path(str(tmp_path), host + "_")
    written = _report.write_host_record(str(tmp_path), host, {"error": "x"})
    assert written["path"] == path and _report.read_host_record(path, written["record_id"], host) == {"error": "x"}


UNKNOWN_RESULT = {"failed": True, "changed": True, "changed_unknown": True,
                  "may_have_applied": ["step 1 (enable SMTP on AB)", "step 2 (restore CD as the internal transport certificate)"],
                  "msg": "ex06: connection failed: 500. The mutating round trip did not answer, so its outcome is unknown"}


def test_a_change_of_unknown_outcome_is_unknown_in_every_report(run, schema):
    entry = _report.entry_from_result(UNKNOWN_RESULT, "ex06", "enforce", OPTIONS, [])
    assert entry == {"changed": None, "may_have_applied": UNKNOWN_RESULT["may_have_applied"], "error": UNKNOWN_RESULT["msg"]}
    report = _report.build_report(dict(run, mode="enforce", hosts=dict(run["hosts"], ex06=entry)))
    validate(report, schema)
    host = next(h for h in report["hosts"] if h["host"] == "ex06")
    assert (host["status"], host["changed"], host["changed_unknown"], host["may_have_applied"]) == (
        "failed", None, True, UNKNOWN_RESULT["may_have_applied"])
    assert report["totals"]["changed_unknown"] == 1 and report["totals"]["changed"] == 0
    assert all(h["changed_unknown"] is False and h["may_have_applied"] == [] for h in report["hosts"] if h["host"] != "ex06")
    suite = next(s for s in ET.fromstring(_report.render_junit(report)).iter("testsuite") if s.get("name") == "ex06")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["changed"] == "unknown" and properties["may_have_applied"] == "; ".join(UNKNOWN_RESULT["may_have_applied"])
    markdown = _report.render_markdown(report)
    assert "- **ex06**: step 1 \\(enable SMTP on AB\\); step 2 \\(restore CD as the internal transport certificate\\)" in markdown
    assert "| Changed | Changed: unknown |" in markdown
    assert _report.host_summary("ex06", entry, "critical")["status"] == "failed"


BIDI_AND_CONTROLS = "a\u202eb\u2066c\u2069d\u200fe\x1bf\x7fg\x85h\x9bi\ufeffj\rk"


def test_control_and_bidi_characters_are_visible_escapes_in_markdown_and_junit_and_json_escapes_in_report_json(run):
    assert _report.md(BIDI_AND_CONTROLS) == "a\\\\u202eb\\\\u2066c\\\\u2069d\\\\u200fe\\\\x1bf\\\\x7fg h\\\\x9bi\\\\ufeffj k"
    assert _report.xml_text(BIDI_AND_CONTROLS + "\nl\tm") == "a\\u202eb\\u2066c\\u2069d\\u200fe\\x1bf\\x7fg\\x85h\\x9bi\\ufeffj\\x0dk\nl\tm"
    server = world.kb2888788("EX07")
    server.certificates[-1].friendly_name = BIDI_AND_CONTROLS
    report = _report.build_report(dict(run, hosts={"ex07": entry(server)}))
    text = _report.render_json(report)
    assert not re.search("[\u202a-\u202e\u2066-\u2069\u200f\x7f-\x9f\ufeff]", text) and "\\u202e" in text
    facts = json.loads(text)["hosts"][0]["facts"]
    assert BIDI_AND_CONTROLS in {c["friendly_name"] for c in facts["certificates"]}  # the same data
    for rendered in (_report.render_markdown(report), _report.render_junit(report).decode("utf-8")):
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200f\ufeff]", rendered)


def test_the_collection_version_comes_from_the_installed_manifest_or_galaxy_yml(tmp_path):
    """Issue 14.4: report.json's collection version is the collection's own, never a string in the code."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
    with open(os.path.join(root, "galaxy.yml"), encoding="utf-8") as handle:
        galaxy = yaml.safe_load(handle)
    assert _report.collection_version(root) == galaxy["version"]
    installed = tmp_path / "installed"
    installed.mkdir()
    (installed / "MANIFEST.json").write_text(json.dumps({"collection_info": {"namespace": "hybridmail", "version": "9.8.7"}}))
    (installed / "galaxy.yml").write_text("version: 1.0.0\n")
    assert _report.collection_version(str(installed)) == "9.8.7"
    source = tmp_path / "source"
    source.mkdir()
    (source / "galaxy.yml").write_text("namespace: hybridmail\nversion: '2.3.4'  # next\n")
    assert _report.collection_version(str(source)) == "2.3.4"
    assert _report.collection_version(str(tmp_path)) is None


@pytest.mark.parametrize("statuses, compliant, expected", [
    (("ok", "ok"), True, "compliant"),
    (("ok", "ok"), False, "not_compliant"),
    (("ok", "unreachable"), False, "broken"),
    (("failed", "ok"), False, "broken"),
])
def test_the_run_result_tells_not_compliant_from_broken(statuses, compliant, expected):
    """Issue 14.5: exit code 2 is both; report.json's result says which."""
    assert _report.run_result([{"status": status} for status in statuses], compliant) == expected


CRITICAL_NO_FIX = {"id": "HM102", "severity": "critical", "title": "no trusted certificate", "auto_fix": False}
CRITICAL_FIX = {"id": "HM101", "severity": "critical", "title": "ambiguous", "auto_fix": True}
WARNING_NO_FIX = {"id": "HM301", "severity": "warning", "title": "expires soon", "auto_fix": False}


@pytest.mark.parametrize("entry, blockers, planned, expected", [
    ({"findings": [CRITICAL_NO_FIX]}, (), False, ["critical HM102: no trusted certificate"]),
    ({"findings": [CRITICAL_NO_FIX, CRITICAL_FIX]}, (), False, []),  # enforcement should have fixed HM101: a failure
    ({"findings": [WARNING_NO_FIX]}, (), False, []),  # meets fail_on critical
    ({"findings": [CRITICAL_NO_FIX]}, ("mail.contoso.com has no certificate Exchange Online would trust",), False,
     ["mail.contoso.com has no certificate Exchange Online would trust"]),
    ({"findings": [CRITICAL_NO_FIX], "error": "boom"}, (), False, []),  # failed, not cannot-fix
    ({"findings": [CRITICAL_NO_FIX], "planned_changes": ["pin"]}, (), True, []),  # judged after enforcement
    ({"findings": [CRITICAL_FIX]}, (), True, ["critical HM101: ambiguous"]),  # a dry run with nothing planned
])
def test_cannot_fix_is_what_enforcement_cannot_change_never_a_failure(entry, blockers, planned, expected):
    """Issue 12.2: the hosts that must not count as failed in a rollout."""
    assert _report.cannot_fix(entry, "critical", blockers, planned=planned) == expected


def _rollout(statuses, mode="enforce", dry_run=False):
    """A report with hosts {name: (status, compliant, cannot_fix)}."""
    return {"mode": mode, "dry_run": dry_run, "hosts": [
        {"host": host, "status": status, "compliant": compliant, "cannot_fix": list(cannot_fix)}
        for host, (status, compliant, cannot_fix) in statuses.items()]}


OK_HOST, FAILED_HOST, UNFIXABLE = ("ok", True, ()), ("failed", False, ()), ("ok", False, ("install a certificate",))


def test_rollout_stop_counts_the_failed_hosts_of_the_batch_when_a_batch_follows():
    report = _rollout({"ex01": OK_HOST, "ex02": OK_HOST, "ex03": FAILED_HOST, "ex04": OK_HOST, "ex05": OK_HOST})
    batch = ["ex02", "ex03", "ex04", "ex05"]
    assert _report.rollout_stop(report, ["ex06"], batch, 10) == (
        "the rollout stops here: 1 of the 4 hosts of this batch failed (ex03), more than max_fail_percentage 10%; "
        "the 1 hosts of the next batches (ex06) were not contacted")
    assert _report.rollout_stop(report, ["ex06"], batch, 25) is None  # 25 % is not more than 25 %
    assert _report.rollout_stop(report, ["ex06"], batch, None) is None
    # cannot_fix is not failed; nor is a host not compliant before a dry run's planned change.
    assert _report.rollout_stop(_rollout({"ex01": UNFIXABLE}), ["ex02"], ["ex01"], 0) is None
    assert _report.rollout_stop(_rollout({"ex01": ("ok", False, ())}, dry_run=True), ["ex02"], ["ex01"], 0) is None
    assert _report.rollout_stop(_rollout({"ex01": ("ok", False, ())}), ["ex02"], ["ex01"], 0).startswith("the rollout stops here")


def test_rollout_stop_after_the_last_enforce_batch_names_the_hosts_enforcement_cannot_fix():
    report = _rollout({"ex01": UNFIXABLE, "ex02": OK_HOST})
    assert _report.rollout_stop(report, [], ["ex02"], 25) == (
        "1 hosts are not compliant and enforcement cannot fix them: ex01: install a certificate.")
    assert _report.rollout_stop(_rollout({"ex01": UNFIXABLE}, mode="audit"), [], ["ex01"], 25) is None

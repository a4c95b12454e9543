"""Bad input from the user and hostile data from the server, through Ansible, the real winrm plugin and the lab.

- Every module option (certificate_info, smtp_certificate, send_connector_tls, readiness_report) and
  every role variable (roles/hybrid_readiness/meta/argument_specs.yml) given a wrong type, value or
  combination fails with a clear message before any round trip: the lab counts no WinRM command.
- Data from the server is data: FriendlyNames with quotes, newlines, `$()`, markup, Jinja, control
  characters and non-ASCII text, and a server with thousands of certificates, are audited and land
  in well-formed reports (report.json, junit.xml, summary.md) as the text they are.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.core_versions import phrasings
from tests.integration.playbook_runs import hybrid_fleet, run_role, unescape_md, write_fleet
from tests.lab.testing import REPO_ROOT, run_ansible, running_lab

KB2888788 = os.path.join(REPO_ROOT, "tests", "lab", "fleets", "kb2888788.yml")
TRUST_BUNDLE = "{{ hybridmail_trust_bundle }}"
BOOLEAN = "Valid booleans include: ..."  # then a set of values, in no stable order
SESSIONS = "auto, none, snapin, e2010, remote_exchange"


def commands(lab) -> dict:
    return {name: server["winrm"]["requests"]["Command"] for name, server in lab.status()["servers"].items()}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(KB2888788, tmp_path=tmp_path_factory.mktemp("bad-input-lab")) as running:
        yield running


# ---------------------------------------------------------------------------------------------
# Module options
# ---------------------------------------------------------------------------------------------

# (case id, module, options, the whole error message; "..." at its end: the message starts with what
# comes before). {dir} is the test's directory, {case} the case id; trust_bundle is the lab's unless
# the case sets it. Messages of ansible-core's argument spec validation are worded as 2.19 words them
# (core_versions.phrasings gives the other versions' words for the same meaning).
MODULE_CASES = [
    ("info-lookback-negative", "certificate_info", {"event_lookback_days": -1},
     "event_lookback_days must be between 0 and 365, got -1"),
    ("info-lookback-not-int", "certificate_info", {"event_lookback_days": "a week"},
     "argument 'event_lookback_days' is of type str and we were unable to convert to int: \"'a week'\" cannot be converted to an int"),
    ("info-max-events-zero", "certificate_info", {"max_events": 0}, "max_events must be between 1 and 10000, got 0"),
    ("info-thumbprint-bad", "certificate_info", {"thumbprints": ["not-a-thumbprint"]},
     "'not-a-thumbprint' is not a certificate thumbprint (40 hexadecimal digits)"),
    ("info-thumbprints-empty", "certificate_info", {"thumbprints": []},
     "thumbprints must not be empty; omit it to select every certificate"),
    ("info-bundle-missing", "certificate_info", {"trust_bundle": "{dir}/missing.pem"},
     "cannot read trust bundle {dir}/missing.pem: No such file or directory"),
    ("info-bundle-not-pem", "certificate_info", {"trust_bundle": "{dir}/not-pem.txt"},
     "trust bundle {dir}/not-pem.txt holds no PEM certificate (-----BEGIN CERTIFICATE-----); a PEM bundle is expected"),
    ("info-bundle-directory", "certificate_info", {"trust_bundle": "{dir}"}, "cannot read trust bundle {dir}: Is a directory"),
    ("info-key-size-small", "certificate_info", {"min_key_size": 100}, "min_key_size must be between 512 and 16384, got 100"),
    ("info-session-bogus", "certificate_info", {"exchange_session": "bogus"},
     "value of exchange_session must be one of: %s, got: bogus" % SESSIONS),
    ("info-unknown-option", "certificate_info", {"color": "blue"},
     "Unsupported parameters for (ansible_collections.hybridmail.exchange.plugins.action.certificate_info) module: color. "
     "Supported parameters include: event_lookback_days, exchange_session, max_events, min_key_size, thumbprints, trust_bundle."),
    ("smtp-scope-bogus", "smtp_certificate", {"scope": "everything"}, "value of scope must be one of: hybrid, all, got: everything"),
    ("smtp-exempt-bad", "smtp_certificate", {"exempt_thumbprints": ["xyz"]},
     "exempt_thumbprints: 'xyz' is not a certificate thumbprint (40 hexadecimal digits)"),
    ("smtp-remove-not-bool", "smtp_certificate", {"remove_untrusted": "perhaps"},
     "argument 'remove_untrusted' is of type str and we were unable to convert to bool: The value 'perhaps' is not a valid "
     "boolean. " + BOOLEAN),
    ("smtp-pin-not-bool", "smtp_certificate", {"pin_connectors": "x"},
     "argument 'pin_connectors' is of type str and we were unable to convert to bool: The value 'x' is not a valid boolean. " + BOOLEAN),
    ("smtp-exempt-itc-not-bool", "smtp_certificate", {"exempt_internal_transport": "nope"},
     "argument 'exempt_internal_transport' is of type str and we were unable to convert to bool: The value 'nope' is not a "
     "valid boolean. " + BOOLEAN),
    ("smtp-lookback-negative", "smtp_certificate", {"event_lookback_days": -5}, "event_lookback_days must be between 0 and 365, got -5"),
    ("smtp-lookback-huge", "smtp_certificate", {"event_lookback_days": 1000}, "event_lookback_days must be between 0 and 365, got 1000"),
    ("smtp-key-size-big", "smtp_certificate", {"min_key_size": 20000}, "min_key_size must be between 512 and 16384, got 20000"),
    ("smtp-bundle-missing", "smtp_certificate", {"trust_bundle": "{dir}/missing.pem"},
     "cannot read trust bundle {dir}/missing.pem: No such file or directory"),
    ("tls-receive-not-bool", "send_connector_tls", {"receive_connectors": "sometimes"},
     "argument 'receive_connectors' is of type str and we were unable to convert to bool: The value 'sometimes' is not a "
     "valid boolean. " + BOOLEAN),
    ("tls-key-size-big", "send_connector_tls", {"min_key_size": 99999}, "min_key_size must be between 512 and 16384, got 99999"),
    ("tls-session-int", "send_connector_tls", {"exchange_session": 5},
     "value of exchange_session must be one of: %s, got: 5" % SESSIONS),
    # scope belongs to smtp_certificate: the wrong module for an option is an error, not ignored.
    ("tls-scope-foreign", "send_connector_tls", {"scope": "all"},
     "Unsupported parameters for (ansible_collections.hybridmail.exchange.plugins.action.send_connector_tls) module: scope. "
     "Supported parameters include: event_lookback_days, exchange_session, min_key_size, receive_connectors, trust_bundle."),
    ("report-hosts-missing", "readiness_report", {"report_dir": "{dir}/{case}"}, "missing required arguments: hosts"),
    ("report-mode-bogus", "readiness_report", {"hosts": ["ex01"], "report_dir": "{dir}/{case}", "mode": "fix"},
     "value of mode must be one of: audit, enforce, got: fix"),
    ("report-fail-on-bogus", "readiness_report", {"hosts": ["ex01"], "report_dir": "{dir}/{case}", "fail_on": "always"},
     "value of fail_on must be one of: critical, warning, never, got: always"),
    ("report-expiry-inverted", "readiness_report", {"hosts": ["ex01"], "report_dir": "{dir}/{case}", "expiry_critical_days": 90},
     "expiry_critical_days (90) must not exceed expiry_warning_days (60)"),
    ("report-expiry-negative", "readiness_report", {"hosts": ["ex01"], "report_dir": "{dir}/{case}", "expiry_warning_days": -1},
     "expiry_warning_days must be a non-negative integer, got -1"),
    ("report-exemption-no-reason", "readiness_report", {"hosts": ["ex01"], "report_dir": "{dir}/{case}", "exemptions": [{"id": "HM101"}]},
     "exemption 1 (HM101) needs a reason"),
    ("report-exemption-bad-date", "readiness_report",
     {"hosts": ["ex01"], "report_dir": "{dir}/{case}", "exemptions": [{"id": "HM101", "reason": "x", "until": "next week"}]},
     "exemption 1 (HM101): until 'next week' is not a date (YYYY-MM-DD)"),
    ("report-exemption-unknown-id", "readiness_report",
     {"hosts": ["ex01"], "report_dir": "{dir}/{case}", "exemptions": [{"id": "NOPE", "reason": "x"}]},
     "exemption 1 names 'NOPE', which is not a finding id (see docs/findings.md)"),
    ("report-exemptions-not-dicts", "readiness_report", {"hosts": ["ex01"], "report_dir": "{dir}/{case}", "exemptions": "HM101"},
     "Elements value for option 'exemptions' is of type str and we were unable to convert to dict: dictionary requested, "
     "could not parse JSON or key=value"),
    ("report-dir-is-a-file", "readiness_report", {"hosts": ["ex01"], "report_dir": "{dir}/regular-file"},
     "cannot write the hybrid readiness reports: [Errno 17] File exists: '{dir}/regular-file'"),
    # The modules accept 512-16384 bits; the report must not judge keys by another rule.
    ("report-key-size-tiny", "readiness_report", {"hosts": ["ex01"], "report_dir": "{dir}/{case}", "min_key_size": 1},
     "min_key_size must be between 512 and 16384, got 1"),
]


def _fill(value, directory: str, case: str = ""):
    if isinstance(value, str):
        return value.replace("{dir}", directory).replace("{case}", case)
    if isinstance(value, list):
        return [_fill(item, directory, case) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, directory, case) for key, item in value.items()}
    return value


def message_matches(actual, expected: str) -> bool:
    """Whether actual is expected, in one of the phrasings of the ansible-core under test."""
    for phrasing in phrasings(expected):
        if phrasing.endswith("...") and str(actual).startswith(phrasing[:-3]):
            return True
        if actual == phrasing:
            return True
    return False


@pytest.fixture(scope="module")
def module_results(lab, tmp_path_factory):
    """Every MODULE_CASES task in one play on ex01; {case id: registered result}, and the WinRM commands."""
    directory = tmp_path_factory.mktemp("bad-modules")
    (directory / "not-pem.txt").write_text("this is not a certificate\n", encoding="utf-8")
    (directory / "regular-file").write_text("x", encoding="utf-8")
    tasks = []
    for number, (case, module, options, _message) in enumerate(MODULE_CASES):
        options = _fill(options, str(directory), case)
        if module != "readiness_report":
            options = dict({"trust_bundle": TRUST_BUNDLE}, **options)
        tasks.append({"name": case, "hybridmail.exchange." + module: options, "register": "case_%d" % number, "ignore_errors": True})
    registered = ", ".join("case_%d" % number for number in range(len(MODULE_CASES)))
    tasks.append({"name": "Keep the results", "delegate_to": "localhost",
                  "ansible.builtin.copy": {"dest": str(directory / "results.json"), "content": "{{ [%s] | to_json }}" % registered}})
    playbook = directory / "bad-options.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "ex01", "gather_facts": False, "tasks": tasks}], sort_keys=False), encoding="utf-8")
    lab.reset_counters()
    completed = run_ansible([str(playbook)], lab.inventory, program="ansible-playbook")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    results = json.loads((directory / "results.json").read_text(encoding="utf-8"))
    return {case[0]: result for case, result in zip(MODULE_CASES, results)}, commands(lab), str(directory)


@pytest.mark.matrix
@pytest.mark.parametrize("case, module, options, message", MODULE_CASES, ids=[case[0] for case in MODULE_CASES])
def test_a_bad_module_option_is_refused_before_any_round_trip(module_results, case, module, options, message):
    results, counted, directory = module_results
    result = results[case]
    assert result.get("failed") is True and message_matches(result.get("msg"), _fill(message, directory, case)), result
    assert counted == {"EX01": 0, "EX02": 0}, "the bad options cost WinRM commands: %s" % counted
    if module == "readiness_report":
        assert not os.path.exists(os.path.join(directory, case)), "a report was written although an option was wrong"


# ---------------------------------------------------------------------------------------------
# Role variables
# ---------------------------------------------------------------------------------------------

SPEC = "Validating arguments against arg spec 'main'"
# (case id, mode, extra vars, what the output must say). Argument spec errors name the variable;
# the others are checked by the modules or the report, which must still refuse before any round trip.
ROLE_CASES = [
    ("mode", "enforce", {"hybrid_readiness_mode": "fix"}, "value of hybrid_readiness_mode must be one of: audit, enforce, got: fix"),
    # The audit playbook refuses any mode but audit, before the role checks anything (issue 16).
    ("mode-on-audit", "audit", {"hybrid_readiness_mode": "fix"},
     "playbooks/hybrid_readiness.yml only audits, but hybrid_readiness_mode is 'fix'"),
    ("fail-on", "audit", {"hybrid_readiness_fail_on": "sometimes"},
     "value of hybrid_readiness_fail_on must be one of: critical, warning, never, got: sometimes"),
    ("expiry-not-int", "audit", {"hybrid_readiness_expiry_warning_days": "soon"},
     "argument 'hybrid_readiness_expiry_warning_days' is of type str and we were unable to convert to int"),
    ("scope", "enforce", {"hybrid_readiness_scope": "everything"},
     "value of hybrid_readiness_scope must be one of: hybrid, all, got: everything"),
    ("session", "audit", {"hybrid_readiness_exchange_session": "bogus"},
     "value of hybrid_readiness_exchange_session must be one of: %s, got: bogus" % SESSIONS),
    ("remove-untrusted", "enforce", {"hybrid_readiness_remove_untrusted": "perhaps"},
     "argument 'hybrid_readiness_remove_untrusted' is of type str and we were unable to convert to bool"),
    ("exemptions-not-dicts", "audit", {"hybrid_readiness_exemptions": ["HM101"]},
     "Elements value for option 'hybrid_readiness_exemptions' is of type str and we were unable to convert to dict"),
    ("exempt-thumbprint", "enforce", {"hybrid_readiness_exempt_thumbprints": ["zz"]},
     "exempt_thumbprints: 'zz' is not a certificate thumbprint (40 hexadecimal digits)"),
    ("key-size", "audit", {"hybrid_readiness_min_key_size": 100}, "min_key_size must be between 512 and 16384, got 100"),
    ("lookback", "audit", {"hybrid_readiness_event_lookback_days": 400}, "event_lookback_days must be between 0 and 365, got 400"),
    ("trust-bundle", "enforce", {"hybrid_readiness_trust_bundle": "/nonexistent/roots.pem"},
     "cannot read trust bundle /nonexistent/roots.pem: No such file or directory"),
    # Combinations and values only the report checks: wrong before the first server is touched, not after.
    ("expiry-inverted", "enforce", {"hybrid_readiness_expiry_critical_days": 90},
     "expiry_critical_days (90) must not exceed expiry_warning_days (60)"),
    ("exemption-no-reason", "enforce", {"hybrid_readiness_exemptions": [{"id": "HM101"}]}, "exemption 1 (HM101) needs a reason"),
    ("exemption-unknown-id", "enforce", {"hybrid_readiness_exemptions": [{"id": "HM1O1", "reason": "typo"}]},
     "exemption 1 names 'HM1O1', which is not a finding id (see docs/findings.md)"),
    ("report-dir-is-a-file", "enforce", {"hybrid_readiness_report_dir": "{dir}/regular-file"},
     "cannot write the hybrid readiness reports: [Errno 17] File exists: '{dir}/regular-file'"),
]


# The cases worded by ansible-core's argument spec validation (core_versions.phrasings) are in the matrix.
MATRIX_ROLE_CASES = {"expiry-not-int", "remove-untrusted", "exemptions-not-dicts"}


@pytest.mark.parametrize("case, mode, variables, message", [
    pytest.param(*case, id=case[0], marks=[pytest.mark.matrix] if case[0] in MATRIX_ROLE_CASES else [])
    for case in ROLE_CASES])
def test_a_bad_role_variable_is_refused_before_any_round_trip(lab, tmp_path, case, mode, variables, message):
    (tmp_path / "regular-file").write_text("x", encoding="utf-8")
    variables = _fill(variables, str(tmp_path))
    lab.reset_counters()
    run = run_ansible([os.path.join(REPO_ROOT, "playbooks", "hybrid_readiness.yml" if mode == "audit" else "remediate.yml"),
                       "-e", "hybrid_readiness_trust_bundle=%s" % TRUST_BUNDLE,
                       "-e", "hybrid_readiness_report_dir=%s" % (tmp_path / "reports"),
                       "-e", json.dumps(variables)],
                      lab.inventory, program="ansible-playbook")
    output = run.stdout + run.stderr
    counted = commands(lab)
    assert run.returncode != 0, output
    assert any(phrasing in output for phrasing in phrasings(message.replace("{dir}", str(tmp_path)))), output
    assert counted == {"EX01": 0, "EX02": 0}, "%s was refused only after %s WinRM command(s)" % (case, counted)
    assert all(not server["mutations"] for server in lab.status()["servers"].values())


# ---------------------------------------------------------------------------------------------
# Hostile data from the server
# ---------------------------------------------------------------------------------------------

HOSTILE_NAMES = [
    "Quote \"double\" 'single' `backtick` \\backslash",
    "Line one\nLine two\r\nLine three\ttab",
    "$(Remove-ExchangeCertificate -Thumbprint X -Confirm:$false); ${env:COMPUTERNAME} @(1) & | ; exit 1",
    "<script>alert(\"x\")</script> <![CDATA[ ]]> &amp; </testcase><testcase name=\"forged\">",
    "Müller – Česká pošta – 日本語 – 📫 – \u202eRTL override",
    "{{ 7 * 7 }} {% if true %}jinja{% endif %} {{ lookup('ansible.builtin.pipe', 'touch PWNED') }}",
    "| pipe | **bold** [link](http://evil.example) ![img](http://evil.example/x.png) # heading",
    "control \x07 bell \x1b[31m escape \x00 nul",
]
BULK = 2000  # certificates on one server
BULK_AUDIT_SECONDS = 90  # the audit (lab and controller): ~15 s when linear; a quadratic controller takes minutes


def hostile_fleet(pwned: Path) -> dict:
    hostile = []
    for number, name in enumerate(HOSTILE_NAMES):
        hostile.append({
            # Untrusted (enterprise CA), SMTP, for the hybrid name: each is a finding that names it.
            # Older than the public certificate, so transport keeps choosing the public one.
            "subject": "CN=mail.contoso.com, OU=hostile %d, O=Contoso Ltd, C=US" % number, "issuer": "enterprise_ca",
            "sans": ["mail.contoso.com"], "not_before": "-200d", "not_after": "+300d",
            "friendly_name": name.replace("PWNED", str(pwned)), "services": "SMTP",
        })
    # No TlsCertificateName: each hostile certificate could be offered to Exchange Online (HM103 names it).
    return hybrid_fleet({"EX01": {"certificates": [{"id": "public", "services": "IIS, SMTP"}] + hostile}})


def bulk_fleet() -> dict:
    bulk = [{"subject": "CN=app%04d.contoso.com, O=Contoso Ltd, C=US" % number, "issuer": "enterprise_ca",
             "sans": ["app%04d.contoso.com" % number], "services": "None",
             "friendly_name": "bulk %04d <&> %s" % (number, HOSTILE_NAMES[number % len(HOSTILE_NAMES)][:16])}
            for number in range(BULK)]
    data = hybrid_fleet({"EX01": {"certificates": [{"id": "public", "services": "IIS, SMTP"}] + bulk}})
    data["organization"]["send_connectors"][0]["tls_certificate"] = "public"
    return data


def label(text: str) -> str:
    """How a finding title names a certificate: on one line (whitespace runs collapsed), at most 80 characters."""
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


def xml_expected(text: str) -> str:
    """What junit.xml shows of a server string: control characters (XML 1.0 forbids most) as \\xNN, bidi
    controls as \\uNNNN; line feeds and tabs as they are."""
    text = re.sub("[\x00-\x08\x0b-\x1f\x7f-\x9f]", lambda match: "\\x%02x" % ord(match.group()), text)
    return re.sub("[\u202a-\u202e\u2066-\u2069]", lambda match: "\\u%04x" % ord(match.group()), text)


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile")
    pwned = directory / "pwned"
    with running_lab(write_fleet(directory / "hostile.yml", hostile_fleet(pwned)), tmp_path=directory) as running:
        run = run_role(running.inventory, "audit", directory / "reports")
        servers = running.status()["servers"]
    return run, servers, pwned


@pytest.mark.matrix
def test_hostile_friendly_names_are_audited_and_reported_as_data(hostile_run):
    run, servers, pwned = hostile_run
    entry = run.host("ex01")
    assert entry["status"] == "ok" and entry["error"] is None, entry["error"]
    names = {c["friendly_name"] for c in entry["facts"]["certificates"]}
    wanted = [name.replace("PWNED", str(pwned)) for name in HOSTILE_NAMES]
    assert set(wanted) <= names, sorted(set(wanted) - names)
    # Every hostile certificate is a finding whose title carries its name on one line (whitespace runs
    # collapsed, long names shortened, everything else as it is).
    titles = [f["title"] for f in entry["findings"] if f["id"] == "HM103"]
    for name in wanted:
        assert sum(1 for title in titles if label(name) in title) == 1, (name, titles)
    # Nothing was templated or run on the controller, nothing changed on the server.
    assert not pwned.exists(), "a FriendlyName was evaluated as a template on the controller"
    assert not servers["EX01"]["mutations"] and all(cmdlet.startswith("Get-") for cmdlet in servers["EX01"]["cmdlet_calls"])
    # Mail still flows: the hostile certificates never became the one transport chooses.
    assert servers["EX01"]["mail_flow"]["delivered"] is True


@pytest.mark.matrix
def test_hostile_names_keep_junit_xml_well_formed(hostile_run):
    run, _servers, pwned = hostile_run
    suite = run.junit_suite("ex01")
    names = [case.get("name") for case in suite.iter("testcase")]
    assert "forged" not in names and len(names) == len(set(names))
    assert not list(run.junit.iter("script"))
    hm103 = next(case for case in suite.iter("testcase") if case.get("name", "").startswith("HM103 "))
    failure = hm103.find("failure")
    assert failure is not None and failure.get("type") == "critical"
    for name in HOSTILE_NAMES:
        assert xml_expected(label(name.replace("PWNED", str(pwned)))) in failure.text, name


@pytest.mark.matrix
def test_hostile_names_keep_summary_md_one_row_per_server(hostile_run):
    run, _servers, pwned = hostile_run
    lines = run.summary.splitlines()
    rows = [line for line in lines if line.startswith("| ex01 |")]
    assert len(rows) == 1 and unescaped_pipes(rows[0]) == 9, rows  # 8 columns (Changed: issue 14.4)
    for line in lines:
        if line.startswith("|"):
            assert line.endswith("|"), line
        # The only HTML in the summary is the <br> between top findings; nothing else is markup.
        assert re.sub(r"<br>", "", line).count("<") == line.count("\\<"), line
    shown = unescape_md(rows[0])
    assert sum(1 for name in HOSTILE_NAMES if label(name.replace("PWNED", str(pwned))) in shown) >= 1


def test_a_server_with_thousands_of_certificates_is_audited_in_one_round_trip(tmp_path):
    with running_lab(write_fleet(tmp_path / "bulk.yml", bulk_fleet()), tmp_path=tmp_path, startup_timeout=180) as running:
        started = time.monotonic()
        try:
            run = run_role(running.inventory, "audit", tmp_path / "reports", timeout=BULK_AUDIT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail("the audit of one server with %d certificates did not finish in %d s" % (BULK, BULK_AUDIT_SECONDS))
        elapsed = time.monotonic() - started
        server = running.status()["servers"]["EX01"]
    entry = run.host("ex01")
    assert entry["status"] == "ok" and entry["error"] is None, entry["error"]
    certificates = entry["facts"]["certificates"]
    # The bulk certificates, the public one, the self-signed and the Auth certificate, each once.
    assert len({c["thumbprint"] for c in certificates}) == len(certificates) == BULK + 3
    assert {c["friendly_name"] for c in certificates} >= {"bulk %04d <&> %s" % (n, HOSTILE_NAMES[n % len(HOSTILE_NAMES)][:16])
                                                          for n in range(BULK)}
    assert server["winrm"]["requests"]["Command"] == 1 and not server["mutations"]
    assert entry["compliant"] is True and run.rc == 0, [f["title"] for f in entry["findings"]]
    assert run.junit_suite("ex01").get("errors") == "0"
    assert elapsed < BULK_AUDIT_SECONDS

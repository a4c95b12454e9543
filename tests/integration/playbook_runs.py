"""Run the role's playbooks against a lab and read what they left behind.

Shared by the fault, bad-input and secret tests: one ansible-playbook run of
playbooks/hybrid_readiness.yml (audit) or playbooks/remediate.yml (enforce) with its own report
directory, and readers for the play output (per-host `fatal:` results, the recap) and the three
reports (report.json, junit.xml, summary.md). Fleets are built here as data and written to a file
(schema: tests/lab/fleets/README.md).
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.lab.testing import REPO_ROOT, ansible_env

PLAYBOOKS = {
    "audit": os.path.join(REPO_ROOT, "playbooks", "hybrid_readiness.yml"),
    "enforce": os.path.join(REPO_ROOT, "playbooks", "remediate.yml"),
}
TRUST_BUNDLE = "hybrid_readiness_trust_bundle={{ hybridmail_trust_bundle }}"
SEND_CONNECTOR = "Outbound to Office 365"

_FATAL = re.compile(r"^fatal: \[(?P<host>[^\]]+)\]: (?P<kind>FAILED|UNREACHABLE)! => (?P<result>\{.*\})$")
_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")
_MD_ESCAPE = re.compile(r"\\(.)")


# ---------------------------------------------------------------------------------------------
# Fleets
# ---------------------------------------------------------------------------------------------

# Server kinds of hybrid_fleet():
#   healthy   the public certificate has IIS and SMTP: mail to Exchange Online flows; enforce changes nothing.
#   unbound   the public certificate is there but only for IIS: no certificate for mail.contoso.com is
#             enabled for SMTP, mail does not flow; enforce enables SMTP on it (-Force) and restores the
#             internal transport certificate: two Enable-ExchangeCertificate calls on this server only.
#   incident  KB 2888788 with Exchange replacing services: the newer internal-CA certificate has SMTP
#             too and is chosen; enforce drops SMTP from it, then pins the organisation's send connector.
PUBLIC_SUBJECT = "CN=mail.contoso.com, O=Contoso Ltd, C=US"
_SERVICES = {
    "healthy": [{"id": "public", "services": "IIS, SMTP"}],
    "unbound": [{"id": "public", "services": "IIS"}],
    "incident": [{"id": "public", "services": "IIS, SMTP"}, {"id": "internal", "services": "IMAP, POP, SMTP"}],
}


def hybrid_fleet(kinds: dict, certificates: dict | None = None) -> dict:
    """Fleet data: {server name: kind} (kinds above, or a full server entry as a dict), one organisation
    whose cloud send connector has no TlsCertificateName."""
    servers = []
    for name, kind in kinds.items():
        if isinstance(kind, dict):
            servers.append(dict(kind, name=name))
            continue
        entry = {"name": name, "certificates": copy.deepcopy(_SERVICES[kind])}
        if kind == "incident":
            entry["enable_behavior"] = "replace"
        servers.append(entry)
    return {
        "organization": {
            "name": "Contoso Ltd", "domain": "contoso.com", "tenant": "contoso",
            "hybrid": {"tls_certificate": "public"},
            "send_connectors": [{"name": SEND_CONNECTOR, "cloud": True, "fqdn": "mail.contoso.com",
                                 "tls_certificate": None, "source_servers": "all"}],
        },
        "certificates": dict({
            "public": {"subject": PUBLIC_SUBJECT, "issuer": "public_ca", "sans": ["mail.contoso.com"],
                       "not_before": "-120d", "not_after": "+245d", "friendly_name": "Contoso public 2026"},
            "internal": {"subject": "CN=mail.contoso.com, OU=IT, O=Contoso Ltd, C=US", "issuer": "enterprise_ca",
                         "sans": ["mail.contoso.com"], "not_before": "-12d", "not_after": "+718d",
                         "friendly_name": "Contoso internal mail (AD CS)"},
        }, **(certificates or {})),
        "servers": servers,
    }


def write_fleet(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------------------------
# Inventories
# ---------------------------------------------------------------------------------------------


def dead_port() -> int:
    """A local TCP port with nothing listening on it (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def derived_inventory(lab_inventory: str, path: Path, host_vars: dict) -> str:
    """A copy of the lab's inventory with extra or overridden variables per host ({host: {var: value}})."""
    with open(lab_inventory, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    hosts = document["all"]["children"]["exchange"]["hosts"]
    for host, variables in host_vars.items():
        hosts.setdefault(host, {}).update(variables)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return str(path)


def inventory_vars(lab_inventory: str) -> dict:
    with open(lab_inventory, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["all"]["children"]["exchange"]["vars"]


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


def unescape_md(text: str) -> str:
    """summary.md text without the backslashes that keep server strings from becoming Markdown."""
    return _MD_ESCAPE.sub(r"\1", text)


@dataclass
class RoleRun:
    """One ansible-playbook run of the role and the reports it wrote."""

    completed: subprocess.CompletedProcess
    report_dir: Path
    report: dict = field(init=False)
    junit: ET.Element = field(init=False)
    summary: str = field(init=False)

    def __post_init__(self):
        json_path = self.report_dir / "report.json"
        if not json_path.exists():
            raise AssertionError("the run wrote no report.json in %s:\n%s" % (self.report_dir, self.output))
        self.report = json.loads(json_path.read_text(encoding="utf-8"))
        self.junit = ET.parse(self.report_dir / "junit.xml").getroot()
        self.summary = (self.report_dir / "summary.md").read_text(encoding="utf-8")

    @property
    def rc(self) -> int:
        return self.completed.returncode

    @property
    def output(self) -> str:
        return self.completed.stdout + self.completed.stderr

    def fatal(self, host: str) -> list[dict]:
        """The results of `fatal: [host]: FAILED!/UNREACHABLE! => {...}` lines, in order (+ "_kind")."""
        found = []
        for line in self.completed.stdout.splitlines():
            match = _FATAL.match(line)
            if match and match["host"] == host:
                found.append(dict(json.loads(match["result"]), _kind=match["kind"]))
        return found

    def recap(self) -> dict:
        """{host: {"ok": n, "changed": n, "unreachable": n, "failed": n, ...}} from PLAY RECAP."""
        lines = self.completed.stdout.split("PLAY RECAP", 1)[-1].splitlines()[1:]
        recap = {}
        for line in lines:
            match = _RECAP.match(line.strip())
            if match:
                recap[match["host"]] = {k: int(v) for k, v in (item.split("=") for item in match["counts"].split())}
        return recap

    def host(self, host: str) -> dict:
        return next(entry for entry in self.report["hosts"] if entry["host"] == host)

    def junit_suite(self, host: str) -> ET.Element:
        suites = [suite for suite in self.junit.iter("testsuite") if suite.get("name") == host]
        assert len(suites) == 1, "junit.xml has %d testsuites named %s" % (len(suites), host)
        return suites[0]

    def junit_error(self, host: str) -> ET.Element | None:
        case = next(case for case in self.junit_suite(host).iter("testcase") if case.get("name") == "audit")
        return case.find("error")

    def summary_error(self, host: str) -> str | None:
        """The text after `- **host** (status): ` under "Unreachable or failed hosts", unescaped."""
        section = self.summary.split("## Unreachable or failed hosts", 1)[1].split("\n## ", 1)[0]
        prefix = "- **%s** (" % host
        for line in unescape_md(section).splitlines():
            if line.startswith(prefix):
                return line[len(prefix):].split("): ", 1)[1]
        return None


def run_playbook(args: list[str], inventory: str, *, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """ansible-playbook like tests.lab.testing.run_ansible, but a run that outlasts timeout is stopped the
    way Ctrl-C would (SIGTERM, which Ansible passes on to its workers; they run in sessions of their
    own) before subprocess.TimeoutExpired is raised, so that no worker keeps running after the test."""
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, *args]
    with subprocess.Popen(command, cwd=REPO_ROOT, env=ansible_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def run_role(inventory: str, mode: str, report_dir: Path, *extra: str, env: dict | None = None,
             timeout: float = 300) -> RoleRun:
    """ansible-playbook of the role's playbook for mode against inventory, reports into report_dir."""
    report_dir.mkdir(parents=True, exist_ok=True)
    args = [PLAYBOOKS[mode], "-e", TRUST_BUNDLE, "-e", "hybrid_readiness_report_dir=%s" % report_dir, *extra]
    return RoleRun(run_playbook(args, inventory, env=env, timeout=timeout), report_dir)

# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""readiness_report: findings per host and for the fleet, and the run's reports, on the controller.

Runs once per play (run_once). It reads each host's registered audit or enforcement result from
hostvars, so no host is contacted again.
"""

from __future__ import annotations

import os
import tempfile

from ansible.plugins.action import ActionBase

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _args, _findings, _report

ARGUMENT_SPEC = dict(
    hosts=dict(type="list", elements="str", required=True),
    result_var=dict(type="str", default="hybrid_readiness_host"),
    report_dir=dict(type="path", required=True),
    mode=dict(type="str", default="audit", choices=["audit", "enforce"]),
    fail_on=dict(type="str", default="critical", choices=list(_findings.FAIL_ON)),
    expiry_warning_days=dict(type="int", default=60),
    expiry_critical_days=dict(type="int", default=30),
    min_key_size=dict(type="int", default=2048),
    exemptions=dict(type="list", elements="dict", default=[]),
    validate_only=dict(type="bool", default=False),
)

THRESHOLDS = ("expiry_warning_days", "expiry_critical_days", "min_key_size")


def registered_results(hostvars, hosts, name) -> dict:
    """{host: the value each host registered under name}.

    hostvars[host] computes every variable of that host (inventory, groups, facts), tens of
    milliseconds a host, which made this task the slowest of a fleet run; a registered result is a
    non-persistent fact, which the variable manager keeps per host. The public path is the fallback.
    """
    cache = getattr(getattr(hostvars, "_variable_manager", None), "_nonpersistent_fact_cache", None)
    if isinstance(cache, dict):
        return {host: cache[host].get(name) for host in hosts if host in cache}
    return {host: hostvars[host].get(name) for host in hosts if host in hostvars}


def check_report_dir(directory: str) -> None:
    """Raises OSError unless reports can be written into directory (created when missing)."""
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".hybridmail-probe-"):
        pass


def host_entry(result, options, exemptions, host, mode):
    """The report's view of one host's registered module result."""
    if not isinstance(result, dict):
        return {"error": "no result from this host in this run"}
    if result.get("unreachable"):
        return {"unreachable": True, "error": result.get("msg") or "host unreachable"}
    # certificate_info returns the facts at the top level; the enforcement modules under "facts".
    facts = result.get("facts") if isinstance(result.get("facts"), dict) else result
    failed = result.get("failed") and not (mode == "audit" and "certificates" in facts)
    # An audit that gathered its facts has not failed, even when the plan it computed is blocked: the
    # findings say why. In enforce mode a blocked or failed change is an error of that host.
    entry = {"changed": bool(result.get("changed")) and mode == "enforce", "error": result.get("msg") if failed else None}
    if "certificates" not in facts:
        entry["error"] = entry["error"] or "the module returned no certificate facts"
        return entry
    entry["facts"] = facts
    findings = _findings.apply_exemptions(_findings.server_findings(facts, options), exemptions, host)
    entry["findings"] = [finding.to_dict() for finding in findings]
    return entry


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        try:
            _args.check_range("min_key_size", args["min_key_size"], 512, 16384)
            options = _findings.Options.of({key: args[key] for key in THRESHOLDS})
            exemptions = _findings.validate_exemptions(args["exemptions"])
        except ValueError as exc:
            return dict(result, failed=True, msg=str(exc))
        if args["validate_only"]:
            try:
                check_report_dir(args["report_dir"])
            except OSError as exc:
                return dict(result, failed=True, msg="cannot write the hybrid readiness reports: %s" % exc)
            return dict(result, changed=False, msg="options valid; reports can be written to %s" % args["report_dir"])

        registered = registered_results((task_vars or {}).get("hostvars", {}), args["hosts"], args["result_var"])
        hosts = {host: host_entry(registered.get(host), options, exemptions, host, args["mode"]) for host in args["hosts"]}

        run = {"hosts": hosts, "mode": args["mode"], "fail_on": args["fail_on"],
               "options": {key: args[key] for key in THRESHOLDS},
               "collection_version": "0.1.0"}
        try:
            written = _report.write_reports(args["report_dir"], run)
        except (_report.ReportError, OSError) as exc:
            return dict(result, failed=True, msg="cannot write the hybrid readiness reports: %s" % exc)

        report = written["report"]
        totals = report["totals"]
        self._display.display(
            "hybrid readiness: %d hosts, %d not compliant (%d critical, %d warning findings); reports: %s, %s, %s" % (
                totals["hosts"], totals["non_compliant_hosts"], totals["findings"]["critical"], totals["findings"]["warning"],
                written["markdown"], written["junit"], written["json"]))
        result.update(
            changed=False,
            compliant=report["compliant"],
            fleet_compliant=report["fleet"]["compliant"],
            totals=report["totals"],
            reports={kind: written[kind] for kind in ("json", "junit", "markdown")},
            hosts={entry["host"]: {
                "compliant": entry["compliant"],
                "status": entry["status"],
                "error": entry["error"],
                "counts": entry["counts"],
                "findings": ["%s %s: %s" % (f["severity"], f["id"], f["title"]) for f in entry["findings"] if not f.get("exemption")],
            } for entry in report["hosts"]},
            fleet_findings=["%s %s: %s" % (f["severity"], f["id"], f["title"]) for f in report["fleet"]["findings"] if not f.get("exemption")],
        )
        return result

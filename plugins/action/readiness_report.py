# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""readiness_report: findings per host and for the fleet, and the run's reports, on the controller.

Runs once per play (run_once). It reads each host's registered result - readiness_check's summary,
whose full record is a file under report_dir/hosts/, or a certificate_info or smtp_certificate result
- so no host is contacted again.
"""

from __future__ import annotations

import os
import tempfile

from ansible.plugins.action import ActionBase

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _args, _findings, _report, _runlock, _text

ARGUMENT_SPEC = dict(
    hosts=dict(type="list", elements="str", required=True),
    result_var=dict(type="str", default="hybrid_readiness_host"),
    report_dir=dict(type="path", required=True),
    mode=dict(type="str", default="audit", choices=["audit", "enforce"]),
    min_key_size=dict(type="int", default=2048),
    validate_only=dict(type="bool", default=False),
    # The hosts of this batch of a serial play, as it starts (ansible_play_batch in the validate_only task,
    # which returns it): a host failed inside the role's block leaves ansible_play_batch, and Ansible's own
    # max_fail_percentage does not count it until the batch ends, after the next batch was decided.
    batch=dict(type="list", elements="str"),
    max_fail_percentage=dict(type="int"),
    **_args.FINDINGS_SPEC,
)


def registered_results(hostvars, hosts, name) -> dict:
    """{host: the value each host registered under name}, through hostvars, Ansible's public view of every
    host's variables (the variable manager's private caches are not an API to build on)."""
    found = {}
    for host in hosts:
        if host in hostvars:
            found[host] = hostvars[host].get(name)
    return found


# This file is <collection>/plugins/action/readiness_report.py.
COLLECTION_VERSION = _report.collection_version(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def check_report_dir(directory: str) -> None:
    """Raises OSError unless the reports can be written into directory and the host records into its
    hosts/ subdirectory (both created when missing)."""
    records = os.path.dirname(_report.record_path(directory, "probe"))
    for path in (directory, records):
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".hybridmail-probe-"):
            pass


def host_entry(result, options, exemptions, host, mode):
    """The run's entry for one host: the record readiness_check wrote, or the registered result itself."""
    if isinstance(result, dict) and result.get("record"):
        try:
            return _report.read_host_record(result["record"], result.get("record_id"), host)
        except _report.ReportError as exc:
            return {"error": str(exc)}
    return _report.entry_from_result(result, host, mode, options, exemptions)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        # Errors and finding lines carry server text: control characters become visible escapes.
        return _text.people_result(self._run(tmp, task_vars))

    def _run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        try:
            options, exemptions = _args.findings_options(args)
        except _args.OptionError as exc:
            return dict(result, failed=True, msg=str(exc))
        if args["validate_only"]:
            # The last check before the first server is contacted: the lock is taken only when all else is right.
            try:
                check_report_dir(args["report_dir"])
                lock = _runlock.acquire(args["report_dir"])
            except OSError as exc:
                return dict(result, failed=True, msg="cannot write the hybrid readiness reports: %s. No server was contacted." % exc)
            except _runlock.LockError as exc:
                return dict(result, failed=True, msg="%s No server was contacted." % exc)
            return dict(result, changed=False, run_id=lock["run_id"], lock=_runlock.lock_path(args["report_dir"]),
                        batch=list(args["batch"] or ()), msg="options valid; reports can be written to %s" % args["report_dir"])
        try:
            _runlock.check(args["report_dir"])
        except (_runlock.LockError, OSError) as exc:
            return dict(result, failed=True, msg="the reports were not written: %s" % exc)

        registered = registered_results((task_vars or {}).get("hostvars", {}), args["hosts"], args["result_var"])
        try:
            return self.report(result, args, options, exemptions, registered)
        finally:
            # The last batch (every host of the play has a result) removes this run's lock; an earlier one keeps it.
            try:
                _runlock.release(args["report_dir"], last=all(registered.get(host) is not None for host in args["hosts"]))
            except OSError as exc:
                self._display.warning("cannot release the report directory's lock %s: %s" % (_runlock.lock_path(args["report_dir"]), exc))

    def report(self, result, args, options, exemptions, registered):
        # Host by host, keeping only what the reports need besides the facts; report.json reads each
        # host's facts again while it is written. A fleet's facts are never all in memory at once.
        hosts, fleet = {}, {}
        for host in args["hosts"]:
            entry = host_entry(registered.get(host), options, exemptions, host, args["mode"])
            fleet[host] = _report.fleet_certificates(entry)
            hosts[host] = _report.slim_entry(entry)

        def facts_of(host):
            return host_entry(registered.get(host), options, (), host, args["mode"]).get("facts")

        run = {"hosts": hosts, "mode": args["mode"], "fail_on": args["fail_on"], "dry_run": bool(self._task.check_mode),
               "options": {key: args[key] for key in _args.THRESHOLDS},
               "fleet_findings": [finding.to_dict() for finding in _findings.fleet_findings(fleet)],
               "collection_version": COLLECTION_VERSION}
        try:
            written = _report.write_reports(args["report_dir"], run, facts_of=facts_of)
        except (_report.ReportError, OSError) as exc:
            return dict(result, failed=True, msg="cannot write the hybrid readiness reports: %s" % exc)

        report = written["report"]
        totals = report["totals"]
        self._display.display(
            "hybrid readiness: %s: %d hosts, %d not compliant (%d critical, %d warning findings); reports: %s, %s, %s" % (
                report["result"], totals["hosts"], totals["non_compliant_hosts"], totals["findings"]["critical"], totals["findings"]["warning"],
                written["markdown"], written["junit"], written["json"]))
        result.update(
            changed=False,
            compliant=report["compliant"],
            result=report["result"],
            fleet_compliant=report["fleet"]["compliant"],
            totals=report["totals"],
            reports={kind: written[kind] for kind in ("json", "junit", "markdown")},
            hosts={entry["host"]: {
                "compliant": entry["compliant"],
                "status": entry["status"],
                "error": entry["error"],
                "counts": entry["counts"],
                "findings": _report.finding_lines(entry["findings"]),
                "cannot_fix": entry["cannot_fix"],
            } for entry in report["hosts"]},
            fleet_findings=_report.finding_lines(report["fleet"]["findings"]),
        )
        # A failure of this run-once task fails every host of the batch, which ends the play.
        stop = _report.rollout_stop(report, [host for host in args["hosts"] if registered.get(host) is None], args["batch"],
                                    args["max_fail_percentage"])
        if stop:
            result.update(failed=True, msg=stop)
        return result

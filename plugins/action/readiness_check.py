# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""readiness_check: one server's audit or enforcement, judged, in the one task a fleet run pays per host.

It does what smtp_certificate does (in check mode for an audit), turns the result into findings,
writes the host's full record (facts, findings, error) under report_dir/hosts/ for readiness_report,
and returns only a summary: a fleet run keeps N small results instead of N sets of facts, and a
failed host prints a few lines instead of its facts. The host fails when it does not meet fail_on;
an unreachable host fails too, so that the play goes on to the report (an unreachable host would
leave the play, and a batch of unreachable hosts would leave no report).
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _args, _enforce_action, _report, _runlock, _text

ARGUMENT_SPEC = dict(
    _enforce_action.SMTP_CERTIFICATE_SPEC,
    mode=dict(type="str", default="audit", choices=["audit", "enforce"]),
    report_dir=dict(type="path", required=True),
    dry_run=dict(type="bool", default=False),
    vars_prefix=dict(type="str"),
    **_args.FINDINGS_SPEC,
)


class ActionModule(_enforce_action.EnforceAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def planner(self, args):
        return _enforce_action.smtp_certificate_planner(args)

    def run(self, tmp=None, task_vars=None):
        # The summary and the messages carry server text: control characters become visible escapes (the host
        # record keeps the exact text; the reports escape it themselves).
        return _text.people_result(self._run(tmp, task_vars))

    def options_from_vars(self, task_vars: dict, host: str) -> None:
        """Fill each option the task does not set from the variable vars_prefix_<option>, when it is defined.

        Why: Ansible compiles every templated task argument with Jinja in each host's worker process (about
        0.5-1 ms each); the role's fifteen "{{ hybrid_readiness_x }}" arguments were a fifth of a fleet audit's
        controller time. A variable's value is templated here only when it is a template itself (the role's
        defaults are not), as the task's own arguments would have been; untrusted values stay text.
        """
        prefix = self._task.args.get("vars_prefix")
        if not prefix:
            return
        args = dict(self._task.args)
        for name in self.ARGUMENT_SPEC:
            variable = "%s_%s" % (prefix, name)
            if name in args or name == "vars_prefix" or variable not in task_vars:
                continue
            try:
                args[name] = self._templar.template(task_vars[variable])
            except AnsibleError as exc:
                raise _args.OptionError("%s: option %s from variable %s: %s" % (host, name, variable, exc)) from None
        self._task.args = args

    def _run(self, tmp=None, task_vars=None):
        result = ActionBase.run(self, tmp, task_vars)
        del tmp
        host = self.host_of(task_vars)
        try:
            self.options_from_vars(task_vars or {}, host)
        except _args.OptionError as exc:
            return dict(result, failed=True, msg=str(exc))
        args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)[1]
        try:
            options, exemptions = _args.findings_options(args)
        except _args.OptionError as exc:
            return dict(result, failed=True, msg=str(exc))

        try:
            # The role took the report directory's lock for this run; another run's lock stops this host here.
            _runlock.check(args["report_dir"])
        except (_runlock.LockError, OSError) as exc:
            return dict(result, failed=True, msg="%s: not contacted: %s" % (host, exc))

        check_mode = args["mode"] == "audit" or self._task.check_mode
        started = time.monotonic()
        outcome = self.enforce({}, args, host, check_mode=check_mode)
        duration = time.monotonic() - started
        blockers = ()
        if args["mode"] == "enforce" and outcome.get("blocked") and outcome.get("failed"):
            # The interlock refused the plan whole (nothing was sent), or the round trip stopped before pinning a
            # shared send connector another source server cannot present: the server needs what enforcement
            # cannot do (cannot_fix below), which is no failure of the rollout.
            prefix = "%s: " % host
            blockers = [text[len(prefix):] if text.startswith(prefix) else text for text in outcome["blocked"]]
            outcome = dict(outcome, failed=False, msg=None)
        entry = _report.entry_from_result(outcome, host, args["mode"], options, exemptions, dry_run=check_mode)
        entry["duration_seconds"] = duration
        if args["mode"] == "enforce" and (args["dry_run"] or not check_mode):
            entry["cannot_fix"] = _report.cannot_fix(entry, args["fail_on"], blockers, planned=check_mode)
        summary = _report.host_summary(host, entry, args["fail_on"])
        result.update(summary, changed=bool(entry.get("changed")), plan=[step["description"] for step in outcome.get("plan") or ()])
        if entry.get("may_have_applied"):
            # The mutating round trip got no usable answer: changed is unknown, reported as true (Ansible needs a bool).
            result.update(changed=True, changed_unknown=True, may_have_applied=entry["may_have_applied"])
        if "diff" in outcome:
            result["diff"] = outcome["diff"]
        try:
            record = _report.write_host_record(args["report_dir"], host, entry)
        except OSError as exc:
            # What happened on the server stays in the result (changed, plan); the report names the failure.
            return dict(result, failed=True, msg="%s: cannot write the host record for the report: %s. %s" % (
                host, exc, summary["error"] or "; ".join(summary["findings"]) or "The host itself is ready."))
        result.update(record=record["path"], record_id=record["record_id"])
        if summary["cannot_fix"]:
            # Reported (here, in the reports, and by the last batch's report task), never counted as a failed host:
            # a rollout goes on past a server that needs a certificate installed first.
            result["msg"] = "%s: not compliant, and enforcement cannot fix it: %s" % (host, "; ".join(summary["cannot_fix"]))
            self._display.warning(_text.visible(result["msg"], _text.MESSAGE_KEEP))
        elif summary["error"] or not (summary["compliant"] or args["dry_run"] and args["mode"] == "enforce" and check_mode):
            # A dry run of enforce (--check) judges the host by what the plan leaves: only cannot_fix remains, so
            # the hosts that would change are not failed, and their plan and diff show.
            result.update(failed=True, msg=summary["error"] or "; ".join(summary["findings"]))
        elif blockers:
            # Refused, yet the host meets fail_on: nothing fails, but the refusal is news.
            self._display.warning(_text.visible("%s: enforcement refused its plan: %s" % (host, " ".join(blockers)), _text.MESSAGE_KEEP))
        return result

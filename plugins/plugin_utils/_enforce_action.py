# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The action plugin shell shared by smtp_certificate, send_connector_tls and readiness_check.

Validate the options before any round trip, audit (one read-only round trip), plan, and - unless the
plan is empty or blocked, or this is check mode - run the one mutating round trip; then report. The
logic lives in _plan and _enforce; this class only talks to Ansible.
"""

from __future__ import annotations

import datetime
import functools
import time

from ansible.plugins.action import ActionBase

from . import _args, _enforce, _plan, _snapshot, _text, _transport

# smtp_certificate's options (readiness_check has them too).
SMTP_CERTIFICATE_SPEC = dict(
    scope=dict(type="str", default="hybrid", choices=list(_plan.SCOPES)),
    exempt_thumbprints=dict(type="list", elements="str", default=[]),
    exempt_internal_transport=dict(type="bool", default=True),
    remove_untrusted=dict(type="bool", default=False),
    pin_connectors=dict(type="bool", default=True),
    **_args.ENFORCE_SPEC,
)


def smtp_certificate_planner(args: dict):
    """(planner, _plan.SmtpOptions) for smtp_certificate's options. Raises _args.OptionError."""
    try:
        exempt = _args.thumbprints(args["exempt_thumbprints"]) if args["exempt_thumbprints"] else []
    except _args.OptionError as exc:
        raise _args.OptionError("exempt_thumbprints: %s" % exc) from None
    # exempt_internal_transport is ignored: the internal transport certificate is an invariant of every
    # plan (_plan.invariant_violations); EnforceAction.enforce warns when it is set to false.
    options = _plan.SmtpOptions(
        scope=args["scope"],
        exempt_thumbprints=frozenset(exempt),
        remove_untrusted=args["remove_untrusted"],
        pin_connectors=args["pin_connectors"],
    )
    return functools.partial(_plan.plan_smtp_certificate, options=options), options


# Whole-request errors that the runner gives before it runs any call (docs/wire-contract.md): the request
# was malformed or refused, or the Exchange cmdlets could not be loaded. Any other error of a mutating
# round trip (a transport failure, a lost or damaged answer, a runner defect, a timeout) may come after
# some of its steps ran.
NOTHING_RAN = (_transport.BadRequest, _transport.RequestRefused, _transport.SessionLoadFailed, _transport.LanguageModeRefused)
UNKNOWN = "unknown"


def is_task_timeout(exc: BaseException) -> bool:
    """Ansible's task timeout (TaskTimeoutError, a BaseException raised by an alarm inside whatever code runs)."""
    return any(cls.__name__ in ("TaskTimeoutError", "AnsibleTimeoutError") for cls in type(exc).__mro__)


def outcome_unknown(result: dict, enforcer: _enforce.Enforcer, planned: _enforce.Planned, cause: str) -> dict:
    """The result of a mutating round trip that was sent but gave no usable answer.

    Some, all or none of its steps may have run. Ansible's `changed` must be a bool: it is true (the
    conservative answer - a change that happened is never reported as none), `changed_unknown` says that
    it is not known, and `may_have_applied` names the steps. The host failed, and it is reachable: it
    answered the audit, so it is never marked unreachable for this."""
    plan = enforcer.report(planned, None)[0]["plan"]  # the steps as check mode lists them
    may_have_applied = ["step %d (%s)" % (number, step.describe()) for number, step in enumerate(planned.plan.steps, start=1)]
    return dict(result, failed=True, changed=True, changed_unknown=True, may_have_applied=may_have_applied,
                plan=plan, steps=[dict(step, status=UNKNOWN, error=None) for step in plan],
                msg="%s, so its outcome is unknown; these steps may have been applied: %s. Run again: the next run "
                    "plans from what the server now holds." % (cause, "; ".join(may_have_applied)))


def verify_again(connection, enforcer: _enforce.Enforcer, planned: _enforce.Planned, response: dict, sent_at,
                 facts: dict, failure: str | None, host: str, sleep=time.sleep) -> tuple:
    """(facts, failure) after at most len(_enforce.VERIFY_RETRY_WAITS) read-only round trips that repeat the
    verification reads, only while it disagrees with the plan in a way a lagging read explains."""
    again = 0
    for wait in _enforce.VERIFY_RETRY_WAITS:
        if not enforcer.verification_may_lag(planned, response, failure):
            break
        sleep(wait)
        try:
            reads = _transport.run_request(connection, enforcer.verification_request(), host)
        except _transport.RunnerError as exc:
            return facts, "%s Verifying again failed: %s" % (failure, exc)
        again += 1
        response = _enforce.with_reads(response, reads)
        facts, failure = enforcer.report(planned, response, sent_at)
    if again:
        facts["notes"] = list(facts["notes"]) + [_enforce.lagging_read_note(again, failure is None)]
    return facts, failure


class EnforceAction(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True
    _supports_check_mode = True
    _supports_async = False

    ARGUMENT_SPEC: dict = {}

    def planner(self, args: dict):
        """(planner(snapshot, verdicts) -> Plan, _plan.SmtpOptions for the reported states).
        Raises _args.OptionError for option values that cannot be right."""
        raise NotImplementedError

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)[1]
        # Messages carry server text (error messages, connector names): control characters become visible escapes.
        return _text.people_result(self.enforce(result, args, self.host_of(task_vars), check_mode=self._task.check_mode))

    def host_of(self, task_vars) -> str:
        return (task_vars or {}).get("inventory_hostname", self._play_context.remote_addr)

    def enforce(self, result: dict, args: dict, host: str, check_mode: bool) -> dict:
        """Audit, plan and (unless check_mode) change; result updated with the module's return values."""
        try:
            _args.check_range("event_lookback_days", args["event_lookback_days"], 0, 365)
            store = _args.trust_store(args)
            _args.check_session(args)
            planner, options = self.planner(args)
        except _args.OptionError as exc:
            return dict(result, failed=True, msg=str(exc))
        if args.get("exempt_internal_transport") is False:
            self._display.deprecated("exempt_internal_transport is ignored: the internal transport certificate always keeps SMTP "
                                     "(a plan that would change it is refused)", version="2.0.0",
                                     collection_name="hybridmail.exchange")
        enforcer = _enforce.Enforcer(host=host, planner=planner, store=store, now=datetime.datetime.now(datetime.timezone.utc),
                                     min_key_bits=args["min_key_size"], session_load=args["exchange_session"], options=options,
                                     event_lookback_days=args["event_lookback_days"])

        try:
            planned = enforcer.plan(_transport.run_request(self._connection, enforcer.audit_request(), host))
        except _transport.HostUnreachable as exc:
            return dict(result, unreachable=True, msg=str(exc))
        except (_transport.RunnerError, _snapshot.SnapshotError) as exc:
            return dict(result, failed=True, msg=str(exc))

        refusal = enforcer.session_refusal(planned) if planned.plan.steps and not planned.plan.blocked else None
        if refusal:
            facts = enforcer.report(planned, None)[0]
            facts.pop("diff", None)
            return dict(result, **dict(facts, changed=False, failed=True, msg=refusal))
        response = sent_at = None
        if planned.plan.steps and not check_mode:
            sent_at = datetime.datetime.now(datetime.timezone.utc)
            try:
                response = _transport.run_request(self._connection, enforcer.enforcement_request(planned), host)
            except NOTHING_RAN as exc:
                # The runner refused the request or could not load the Exchange cmdlets: no call ran.
                return dict(result, failed=True, msg="%s. Nothing was changed." % exc)
            except _transport.RunnerError as exc:
                # The host answered the audit, so it is reachable; what its mutating round trip did is unknown.
                return outcome_unknown(result, enforcer, planned, "%s. The mutating round trip did not answer" % exc)
            except BaseException as exc:  # pylint: disable=broad-exception-caught
                if not is_task_timeout(exc):
                    raise
                # ANSIBLE_TASK_TIMEOUT / the task's timeout fired while the server was running the batch:
                # Ansible would report changed false for it.
                # ansible-core 2.19's error says "Timed out after N second(s)."; 2.17/2.18's says nothing.
                return outcome_unknown(result, enforcer, planned, "%s: the task timed out during the mutating round trip (%s)"
                                       % (host, str(exc) or "Timed out after %s second(s)." % self._task.timeout))

        facts, failure = enforcer.report(planned, response, sent_at)
        if response is not None:
            facts, failure = verify_again(self._connection, enforcer, planned, response, sent_at, facts, failure, host)
        for note in facts["notes"]:
            self._display.warning(_text.visible("%s: %s" % (host, note), _text.MESSAGE_KEEP))
        if not self._task.diff:
            facts.pop("diff", None)
        result.update(facts)
        if planned.plan.blocked:
            result["blocked"] = list(planned.plan.blockers)  # the interlock refused the plan: nothing was sent
        if failure:
            result.update(failed=True, msg=failure)
        return result

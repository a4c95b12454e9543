# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""server_preflight: one read-only round trip that tells whether the collection can work on a server.

The checks are computed in plugins/plugin_utils/_preflight.py; this class talks to Ansible: options,
the round trip, the diagnostics file on any surprise, the per-host JSON and the one-line failure.
The host fails (it is never marked unreachable) so that a playbook's always: section still sees it.
"""

from __future__ import annotations

import datetime
import platform
import time

from ansible.plugins.action import ActionBase
from ansible.release import __version__ as ansible_version

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _args, _preflight, _text, _transport

ARGUMENT_SPEC = dict(
    rbac_user=dict(type="str"),
    required_for=dict(type="list", elements="str", default=list(_preflight.PURPOSES), choices=list(_preflight.PURPOSES)),
    fail_on_warning=dict(type="bool", default=False),
    diagnostics_dir=dict(type="path"),
    report_dir=dict(type="path"),
    exchange_session=dict(type="str", default="auto", choices=list(_args.SESSION_CHOICES)),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True
    _supports_check_mode = True
    _supports_async = False

    def _connection_option(self, name):
        # Connection plugins differ in their options; a missing one raises KeyError or AnsibleError.
        try:
            return self._connection.get_option(name)
        except Exception:  # pylint: disable=broad-exception-caught
            return None

    def run(self, tmp=None, task_vars=None):
        # Messages carry server text (error messages, names): control characters become visible escapes.
        return _text.people_result(self._run_task(tmp, task_vars), _text.PEOPLE_FIELDS + ("lines",))

    def _run_task(self, tmp, task_vars):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        host = task_vars.get("inventory_hostname", self._play_context.remote_addr)
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        try:
            _args.check_session(args)
        except _args.OptionError as exc:
            return dict(result, failed=True, msg="%s: %s" % (host, exc))

        connection_user = self._connection_option("remote_user") or self._play_context.remote_user
        rbac_user = args["rbac_user"] or connection_user
        password = self._connection_option("remote_password") or self._connection_option("password")
        secrets = _preflight.secret_variants(connection_user, password)
        request = _preflight.request(rbac_user, session_load=args["exchange_session"])

        response, error = None, None
        started = time.monotonic()
        try:
            response = _transport.run_request(self._connection, request, host)
        except _transport.RequestFailed as exc:
            error = {"type": exc.error_type, "message": exc.error_message}
            name = {_preflight.LANGUAGE_MODE_ERROR: "language_mode", "SessionLoadFailed": "cmdlet_loading"}.get(exc.error_type, "runner")
            outcome = _preflight.failure_result(exc.error_type, str(exc), name)
        except _transport.RunnerOutputError as exc:
            error = {"type": type(exc).__name__, "message": exc.detail, "rc": exc.rc,
                     "stdout_excerpt": exc.stdout_excerpt, "stderr_excerpt": exc.stderr_excerpt}
            message = _preflight.no_result_hint(str(exc)) if "no result line" in exc.detail else str(exc)
            outcome = _preflight.failure_result(type(exc).__name__, message)
        except _transport.HostUnreachable as exc:
            error = {"type": type(exc).__name__, "message": exc.detail}
            outcome = _preflight.failure_result(type(exc).__name__, str(exc), "connection")
        except _transport.RunnerError as exc:
            error = {"type": type(exc).__name__, "message": exc.detail}
            outcome = _preflight.failure_result(type(exc).__name__, str(exc))
        else:
            today = datetime.datetime.now(datetime.timezone.utc).date()
            outcome = _preflight.evaluate(response, rbac_user, today, tuple(args["required_for"]))
        round_trip_s = round(time.monotonic() - started, 3)
        for check in outcome["checks"]:  # a server's error text could echo what it was sent
            check["detail"] = _preflight.redact(check["detail"], secrets)

        runner = (response or {}).get("runner") or {}
        timings = {"round_trip_s": round_trip_s, "runner_elapsed_ms": runner.get("elapsed_ms"), "load_ms": runner.get("load_ms")}
        outcome["facts"]["timings"] = timings
        result.update(changed=False, checks=outcome["checks"], ready_for=outcome["ready_for"], server=outcome["facts"],
                      lines=_preflight.table_lines(host, outcome["checks"]), diagnostics=None, report=None)

        if args["diagnostics_dir"] and (error is not None or _preflight.is_surprise(outcome)):
            context = {"ansible_core": ansible_version, "python": platform.python_version(),
                       "connection": getattr(self._connection, "transport", None),
                       "exchange_session": args["exchange_session"], "check_mode": bool(self._task.check_mode)}
            document = _preflight.diagnostics(host, request, response, error, outcome, timings, context)
            try:
                result["diagnostics"] = _preflight.write_diagnostics(args["diagnostics_dir"], host, document, secrets)
            except OSError as exc:
                self._display.warning("%s: cannot write the diagnostics file: %s" % (host, exc))
        if args["report_dir"]:
            record = {"host": host, "checks": outcome["checks"], "ready_for": outcome["ready_for"], "server": outcome["facts"],
                      "diagnostics": result["diagnostics"]}
            try:
                result["report"] = _preflight.write_report(args["report_dir"], host, record)
            except OSError as exc:
                return dict(result, failed=True, msg="%s: cannot write the preflight report: %s" % (host, exc))

        failing = _preflight.judge(outcome, args["fail_on_warning"])
        if failing:
            result.update(failed=True, msg=_preflight.failure_message(host, failing))
        return result

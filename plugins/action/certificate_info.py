# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""certificate_info: one read-only runner round trip, then model, trust and facts on the controller."""

from __future__ import annotations

import datetime

from ansible.plugins.action import ActionBase

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _args, _autofix, _facts, _snapshot, _text, _transport

ARGUMENT_SPEC = dict(
    thumbprints=dict(type="list", elements="str"),
    event_lookback_days=dict(type="int", default=7),
    max_events=dict(type="int", default=50),
    **_args.COMMON_SPEC,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        # Messages carry server text (error messages, names): control characters become visible escapes.
        return _text.people_result(self._run(tmp, task_vars))

    def _run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        host = (task_vars or {}).get("inventory_hostname", self._play_context.remote_addr)

        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        try:
            _args.check_range("event_lookback_days", args["event_lookback_days"], 0, 365)
            _args.check_range("max_events", args["max_events"], 1, 10000)
            thumbprints = _args.thumbprints(args["thumbprints"])
            store = _args.trust_store(args)
            _args.check_session(args)
        except _args.OptionError as exc:
            return dict(result, failed=True, msg=str(exc))

        calls = _snapshot.audit_calls(args["event_lookback_days"], args["max_events"])
        request = _snapshot.request(calls, read_only=True, session_load=args["exchange_session"])
        try:
            response = _transport.run_request(self._connection, request, host)
            snapshot = _snapshot.ServerSnapshot.from_response(response, host, calls)
        except _transport.HostUnreachable as exc:
            return dict(result, unreachable=True, msg=str(exc))
        except (_transport.RunnerError, _snapshot.SnapshotError) as exc:
            return dict(result, failed=True, msg=str(exc))

        now = datetime.datetime.now(datetime.timezone.utc)
        verdicts = _facts.evaluate(snapshot, store, now, args["min_key_size"])
        if thumbprints is not None:
            missing = sorted(set(thumbprints) - set(verdicts))
            if len(missing) == len(thumbprints):
                return dict(result, failed=True,
                            msg="%s: none of the requested thumbprints is on the server: %s" % (host, ", ".join(missing)))
            for thumbprint in missing:
                self._display.warning(_text.visible("%s: certificate %s is not on the server" % (host, thumbprint), _text.MESSAGE_KEEP))
        facts = _facts.server_facts(snapshot, verdicts, now, thumbprints)
        if thumbprints is None:
            # Findings built from these facts read what enforce (smtp_certificate's defaults) would clear.
            _autofix.annotate(facts, snapshot, verdicts, now)
        for warning in facts["warnings"]:
            self._display.warning(_text.visible("%s: %s" % (host, warning), _text.MESSAGE_KEEP))
        result.update(facts)
        result["changed"] = False
        return result

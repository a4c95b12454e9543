# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""exchange_certificate: import, bind, pin, verify (state present); remove (absent); retire superseded ones.

The PFX is read and judged on the controller (_pfx) before any round trip; the logic is _rollout's.
This class only talks to Ansible: options, the file (vault-encrypted files are decrypted the way
ansible.builtin.copy does it, through the loader), the two round trips and the result, from which
every no_log value is removed.
"""

from __future__ import annotations

import datetime
import time

from ansible.errors import AnsibleError
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import (
    _args, _enforce, _enforce_action, _facts, _pfx, _plan, _rollout, _runner, _snapshot, _text, _transport,
)

ARGUMENT_SPEC = dict(
    state=dict(type="str", default="present", choices=list(_rollout.STATES)),
    pfx_path=dict(type="path"),
    pfx_content=dict(type="str", no_log=True),
    pfx_password=dict(type="str", no_log=True),
    names=dict(type="list", elements="str", default=[]),
    services=dict(type="list", elements="str", default=["SMTP"], choices=list(_rollout.SERVICES)),
    do_not_require_ssl=dict(type="bool", default=False),
    private_key_exportable=dict(type="bool", default=False),
    friendly_name=dict(type="str"),
    pin_connectors=dict(type="bool", default=False),
    hybrid_configuration=dict(type="bool", default=False),
    thumbprint=dict(type="str"),
    **_args.COMMON_SPEC,
)
MUTUALLY_EXCLUSIVE = [["pfx_path", "pfx_content"]]
REQUIRED_IF = [["state", "present", ["pfx_path", "pfx_content"], True], ["state", "absent", ["thumbprint"]]]


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        # Messages carry server text (error messages, names): control characters become visible escapes.
        return _text.people_result(self._run_task(tmp, task_vars))

    def _run_task(self, tmp, task_vars):
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE,
                                           required_if=REQUIRED_IF)[1]
        # What no_log protects: whatever happens below, the result is cleaned of them (as Ansible does
        # for a module's result).
        secrets = {value for value in (args["pfx_password"], args["pfx_content"]) if value}
        host = (task_vars or {}).get("inventory_hostname", self._play_context.remote_addr)
        try:
            outcome = self._run(result, args, host)
        except _rollout.PlanError as exc:
            outcome = dict(result, failed=True, msg=str(exc))
        return remove_values(outcome, secrets)

    # -- before any round trip -------------------------------------------------------------------

    def _read_pfx(self, args, host: str) -> bytes:
        if args["pfx_content"]:
            try:
                return _pfx.decode_content(args["pfx_content"])
            except _pfx.PfxError as exc:
                raise _rollout.PlanError("%s: %s; nothing was sent to the server." % (host, exc)) from None
        try:
            source = self._find_needle("files", args["pfx_path"])
            real = self._loader.get_real_file(source, decrypt=True)
        except AnsibleError as exc:
            raise _rollout.PlanError("%s: pfx_path %s cannot be read: %s; nothing was sent to the server."
                                     % (host, args["pfx_path"], exc)) from None
        try:
            with open(real, "rb") as handle:
                return handle.read()
        finally:
            if real != source:
                self._loader.cleanup_tmp_file(real)

    def _options(self, args) -> _rollout.Options:
        thumbprint = None
        if args["thumbprint"]:
            try:
                thumbprint = _args.thumbprints([args["thumbprint"]])[0]
            except _args.OptionError as exc:
                raise _rollout.PlanError("thumbprint: %s" % exc) from None
        return _rollout.Options(
            state=args["state"], services=frozenset(args["services"]), do_not_require_ssl=args["do_not_require_ssl"],
            private_key_exportable=args["private_key_exportable"], friendly_name=args["friendly_name"],
            pin_connectors=args["pin_connectors"], hybrid_configuration=args["hybrid_configuration"],
            names=tuple(name.strip().lower().rstrip(".") for name in args["names"] if name and name.strip()),
            thumbprint=thumbprint)

    # -- the module -------------------------------------------------------------------------------

    def _run(self, result: dict, args: dict, host: str) -> dict:
        try:
            store = _args.trust_store(args)
            _args.check_session(args)
        except _args.OptionError as exc:
            return dict(result, failed=True, msg="%s: %s" % (host, exc))
        options = self._options(args)
        if options.state == _rollout.PRESENT and not options.services:
            return dict(result, failed=True, msg="%s: services must not be empty" % host)
        now = datetime.datetime.now(datetime.timezone.utc)
        min_key_bits = args["min_key_size"]

        pfx = data = None
        if options.state == _rollout.PRESENT:
            data = self._read_pfx(args, host)
            password = args["pfx_password"] or None
            try:
                pfx = _pfx.inspect(data, password, store=store, names=list(options.names) or None, now=now,
                                   min_key_bits=min_key_bits)
            except _pfx.PfxError as exc:
                return dict(result, failed=True, certificate=exc.facts, pfx_problems=[code for code, _t in exc.problems],
                            msg="%s: the PFX %s is refused: %s. Nothing was sent to the server."
                            % (host, _pfx.describe(exc.facts) if exc.facts else (args["pfx_path"] or "in pfx_content"), exc))
            result["certificate"] = pfx.facts()

        reads = _snapshot.audit_calls(event_lookback_days=0)
        session = args["exchange_session"]
        try:
            audit = _transport.run_request(self._connection, _snapshot.request(reads, read_only=True, session_load=session), host)
            before = _snapshot.ServerSnapshot.from_response(audit, host, reads)
        except _transport.HostUnreachable as exc:
            return dict(result, unreachable=True, msg=str(exc))
        except (_transport.RunnerError, _snapshot.SnapshotError) as exc:
            return dict(result, failed=True, msg=str(exc))
        verdicts = _facts.evaluate(before, store, now, min_key_bits)

        if options.state == _rollout.PRESENT:
            password = args["pfx_password"]
            chain_problem = None
            if options.pin_connectors and _rollout.certificate_on(before, pfx.thumbprint) is not None:
                chain_problem = _rollout.chain_finding(before, pfx.thumbprint, store, now, options.names, min_key_bits)["problem"]
            rollout = _rollout.plan_present(
                before, pfx, options, _runner.bytes_value(data), _runner.secure_string_value(password) if password else None,
                verdicts, chain_problem)
            watched = [pfx.thumbprint]
            final = _rollout.final_services(before, pfx.thumbprint, options.services)
        elif options.state == _rollout.ABSENT:
            rollout = _rollout.plan_absent(before, options.thumbprint)
            watched, final = [options.thumbprint], None
        else:
            rollout = _rollout.plan_retired(before, verdicts)
            watched, final = [step.target for step in rollout.plan.steps], None
            watched += [c.thumbprint for c, _newer in _rollout.superseded(before, verdicts) if c.thumbprint not in watched]

        result.update(plan=rollout.describe(), notes=list(rollout.notes), internal_transport_certificate=before.internal_transport_thumbprint)
        for note in rollout.notes:
            self._display.warning(note)
        if rollout.blocked:
            return dict(result, failed=True, changed=False, msg=" ".join(rollout.blockers))
        if rollout.empty or self._task.check_mode:
            result.update(changed=not rollout.empty, steps=_rollout.outcomes(rollout, None))
            if self._task.diff:
                result["diff"] = {"before": _rollout.bindings(before, watched),
                                  "after": _rollout.intended(before, rollout, watched, final)}
            if options.state == _rollout.PRESENT and rollout.empty:
                result["chain"] = _rollout.chain_finding(before, pfx.thumbprint, store, now, options.names, min_key_bits)
                self._warn_chain(result["chain"], host)
            return result

        calls = _rollout.request_calls(host, rollout, audit, reads)
        session, refusal = _enforce.mutation_session(host, session, [call["cmdlet"] for call in calls], before.server.is_edge)
        if refusal:
            return dict(result, failed=True, changed=False, msg=refusal)
        request = _snapshot.request(calls, read_only=False, session_load=session)
        try:
            response = _transport.run_request(self._connection, request, host)
        except _enforce_action.NOTHING_RAN as exc:
            return dict(result, failed=True, msg="%s. Nothing was changed." % exc)
        except _transport.RunnerError as exc:
            # As the enforcement modules (_enforce_action.outcome_unknown): the host answered the audit, so it
            # is reachable, and what the mutating round trip did is unknown, never "no change".
            may_have_applied = list(rollout.describe())
            return dict(result, failed=True, changed=True, changed_unknown=True, may_have_applied=may_have_applied,
                        msg="%s. The mutating round trip did not answer, so its outcome is unknown; these steps may have "
                            "been applied: %s. Run again: the next run plans from what the server now holds."
                            % (exc, "; ".join(may_have_applied)))
        del request
        steps = _rollout.outcomes(rollout, response)
        result["steps"] = steps
        failures = []
        guard = _enforce.failed_guard(response)
        if guard:
            meanings = dict((call["id"], meaning) for call, meaning in _rollout.mutating_calls(host, rollout, audit))
            failures.append(meanings.get(guard) or "%s: guard %s failed; nothing was applied" % (host, guard))
        failed = [s for s in steps if s["status"] == _enforce.FAILED]
        if failed:
            error = failed[0]["error"]
            failures.append("%s: %s failed: %s: %s%s. Applied: %s. Not run: %s." % (
                host, failed[0]["description"], error.get("type") or "error", error.get("message") or "",
                " [%s]" % error["fqid"] if error.get("fqid") else "",
                "; ".join(s["description"] for s in steps if s["status"] == _enforce.APPLIED) or "nothing",
                "; ".join(s["description"] for s in steps if s["status"] == _enforce.SKIPPED) or "nothing"))
        try:
            after = _snapshot.ServerSnapshot.from_response(response, host, reads)
        except _snapshot.SnapshotError as exc:
            failures.append("%s: the re-read after the changes failed, so they are not verified: %s" % (host, exc))
            return dict(result, changed=any(s["status"] == _enforce.APPLIED for s in steps), failed=True, msg=" ".join(failures))
        applied = any(s["status"] == _enforce.APPLIED for s in steps)
        if not failures:
            all_applied = all(s["status"] == _enforce.APPLIED for s in steps)
            after, problems, again = self._verify_again(after, rollout, options, pfx, host, reads, session, all_applied)
            failures += problems
            if again:
                result["notes"] = list(result.get("notes") or ()) + [_enforce.lagging_read_note(again, not problems)]
        diff = {"before": _rollout.bindings(before, watched), "after": _rollout.bindings(after, watched)}
        result.update(changed=applied and diff["before"] != diff["after"], internal_transport_certificate=after.internal_transport_thumbprint)
        if self._task.diff:
            result["diff"] = diff
        if options.state == _rollout.PRESENT:
            result["chain"] = _rollout.chain_finding(after, pfx.thumbprint, store, now, options.names, min_key_bits)
            self._warn_chain(result["chain"], host)
        if failures:
            result.update(failed=True, msg=" ".join(failures))
        return result

    def _verify_again(self, after, rollout, options, pfx, host: str, reads, session: str, all_applied: bool, sleep=time.sleep) -> tuple:
        """(after, problems, reads repeated): as _enforce_action.verify_again, a re-read that disagrees although every
        step applied may lag the change (New-ExchangeAuthCertificate.ps1 waits 10 s for a domain controller): the reads
        are repeated, read-only, after each of _enforce.VERIFY_RETRY_WAITS, only while they disagree."""
        problems = self._verify(after, rollout, options, pfx, host)
        again = 0
        for wait in _enforce.VERIFY_RETRY_WAITS if all_applied and rollout.plan.steps else ():
            if not problems:
                break
            sleep(wait)
            try:
                response = _transport.run_request(self._connection, _snapshot.request(reads, read_only=True, session_load=session), host)
                after = _snapshot.ServerSnapshot.from_response(response, host, reads)
            except (_transport.RunnerError, _snapshot.SnapshotError) as exc:
                return after, problems + ["%s: verifying again failed: %s" % (host, exc)], again
            again += 1
            problems = self._verify(after, rollout, options, pfx, host)
        return after, problems, again

    def _warn_chain(self, chain: dict, host: str) -> None:
        if chain.get("problem"):
            self._display.warning("%s: %s" % (host, chain["problem"]))

    @staticmethod
    def _verify(after: _snapshot.ServerSnapshot, rollout: _rollout.Rollout, options: _rollout.Options, pfx, host: str) -> list:
        """What the re-read must show; each miss is a failure naming the host."""
        problems = []
        if rollout.plan.internal_transport_thumbprint != after.internal_transport_thumbprint:
            previous = rollout.plan.internal_transport_thumbprint
            problems.append("%s: InternalTransportCertificateThumbprint is %s, it was %s. Restore it: Enable-ExchangeCertificate "
                            "-Thumbprint %s -Services SMTP -Force" % (host, after.internal_transport_thumbprint, previous, previous))
        if options.state == _rollout.PRESENT:
            certificate = _rollout.certificate_on(after, pfx.thumbprint)
            if certificate is None:
                return problems + ["%s: certificate %s is not on the server after the import" % (host, pfx.thumbprint)]
            missing = options.services - certificate.services
            if missing:
                problems.append("%s: certificate %s is not enabled for %s after the change (services: %s)"
                                % (host, pfx.thumbprint, _plan.format_services(sorted(missing)), _plan.format_services(certificate.services)))
            for step in rollout.plan.steps:
                if step.action != _plan.PIN_CONNECTOR:
                    continue
                connectors = after.send_connectors if step.connector_kind == _plan.SEND else after.receive_connectors
                current = next((c for c in connectors if c.identity == step.target), None)
                if current is None or certificate not in after.certificates_named_by(current.tls_certificate_name):
                    problems.append("%s: %s connector '%s' does not name %s after the change"
                                    % (host, step.connector_kind, step.target, pfx.thumbprint))
            if rollout.hybrid and (after.hybrid is None or certificate not in after.certificates_named_by(after.hybrid.tls_certificate_name)):
                problems.append("%s: Get-HybridConfiguration's TlsCertificateName does not name %s after the change" % (host, pfx.thumbprint))
        else:
            still = [step.target for step in rollout.plan.steps if _rollout.certificate_on(after, step.target)]
            if still:
                problems.append("%s: %s still on the server after Remove-ExchangeCertificate" % (host, ", ".join(still)))
        return problems

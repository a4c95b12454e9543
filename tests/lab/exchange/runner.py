"""What runner.ps1 does with one decoded request, emulated (docs/wire-contract.md, "Execution").

Validation refuses a request whole (BadRequest / RequestRefused): the collection's own
_runner.check_request decides, so the lab refuses exactly what the controller would not send. The
Exchange session is loaded once, only if a call needs an Exchange cmdlet (SessionLoadFailed
otherwise). Calls then run in order, each in its own try/catch, and each is bound as PowerShell
binds a splatted hashtable (params.py): a parameter the cmdlet does not have, or a value of the
wrong type, fails that call the way PowerShell does. An allow-listed cmdlet the lab does not
emulate yet answers as PowerShell does for a command it does not know (CommandNotFoundException).
The first failed mutation, or a failed guard (error or mismatch), aborts the batch: later mutations
are reported as skipped, Get-* calls still run so that the controller can verify what happened.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import time

from tests.lab.exchange import cmdlets, errors, params, rbac
from tests.lab import wire
from tests.lab.wire import contract
from tests.lab.exchange.convert import convert, select
from tests.lab.exchange.secure import SecureString


class RequestProblem(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


class CallContext:
    """What a cmdlet handler may use: the server, ShouldProcess, and the change log of the call."""

    def __init__(self, server, cmdlet: str, spec, args: dict, user: str | None = None):
        self.server = server
        self.user = user  # the WinRM account of the connection, as the server names it
        self.cmdlet = cmdlet
        self.spec = spec
        self.args = args
        self.changes: list = []
        self.touched: set = set()
        self.organization_changed = False
        self.what_if = False

    def target_server(self, identity, cmdlet_name: str | None = None):
        """The server a -Server argument names (the local one when absent)."""
        if not identity:
            return self.server
        return self.server.resolve_server(identity, cmdlet_name or self.cmdlet)

    def should_process(self, action: str) -> bool:
        """PowerShell's ShouldProcess: WhatIf -> False; a confirmation prompt fails non-interactively."""
        confirm = self.args.get("Confirm")
        if self.args.get("WhatIf"):
            self.what_if = True
            self.changes.append("What if: %s" % action)
            return False
        if confirm is True or (self.spec.confirm_impact == "High" and confirm is not False):
            raise errors.prompt_error(self.cmdlet)
        return True

    def change(self, text: str) -> None:
        self.changes.append(text)

    def touch(self, server) -> None:
        self.touched.add(server)

    def touch_organization(self) -> None:
        self.organization_changed = True


def _resolve_typed(value, server):
    """Typed values ({"__hybridmail": ...}) -> their PowerShell values, recursively (hashtables too)."""
    if isinstance(value, dict):
        if "__hybridmail" in value:
            kind = value["__hybridmail"]
            if kind == "computername":
                return server.name
            if kind == "days_ago":
                days = value.get("value")
                if isinstance(days, bool) or not isinstance(days, (int, float)):
                    raise RequestProblem("BadRequest", "days_ago needs a numeric value, got %r" % (days,))
                return server.now() - datetime.timedelta(days=days)
            if kind == "bytes":  # [byte[]] for Import-ExchangeCertificate -FileData
                try:
                    return base64.b64decode(str(value.get("value", "")), validate=True)
                except (binascii.Error, ValueError):
                    raise RequestProblem("BadRequest", "bytes needs a base64 value") from None
            if kind == "secure_string":  # a SecureString built in the runner (-Password)
                if not isinstance(value.get("value"), str):
                    raise RequestProblem("BadRequest", "secure_string needs a string value")
                return SecureString(value["value"])
            raise RequestProblem("BadRequest", "unknown typed value %r" % (kind,))
        return {key: _resolve_typed(item, server) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_typed(item, server) for item in value]
    return value


def _validate(request) -> None:
    """What runner.ps1 refuses or rejects: the controller's own check (_runner.check_request)."""
    try:
        contract.check_request(request)
    except contract.RequestError as problem:
        raise RequestProblem(problem.kind, problem.message) from None


def _guard_properties(expect: list) -> list:
    names: list = []
    for row in expect:
        for name in row:
            if name not in names:
                names.append(name)
    return names


def _guard_matches(objects: list, expect: list) -> bool:
    names = _guard_properties(expect)
    actual = [select(obj, names) for obj in objects]
    return wire.canonical_rows(actual, names) == wire.canonical_rows(expect, names)


def _needs_exchange(cmdlet: str) -> bool:
    return cmdlet not in contract.WINDOWS_CMDLETS + contract.RUNNER_HELPERS


def execute(server, request, user: str | None = None) -> dict:
    """Run one request on `server` (its organisation's lock is held by the caller); user is the
    account of the connection (what Get-HybridmailHost reports as UserName)."""
    started = time.perf_counter()
    response = {"version": contract.WIRE_VERSION, "host": server.name}
    runner_info = {"powershell": server.powershell_version, "load": "none", "load_ms": 0, "elapsed_ms": 0}
    try:
        _validate(request)
        calls = request["calls"]
        arguments = [_resolve_typed(call.get("parameters") or {}, server) for call in calls]
        if any(_needs_exchange(call["cmdlet"]) for call in calls):
            runner_info["load"] = server.load_session(request["session"]["load"])
            runner_info["load_ms"] = server.session_load_ms(runner_info["load"])
        load = runner_info["load"]
    except RequestProblem as problem:
        runner_info["elapsed_ms"] = int((time.perf_counter() - started) * 1000)
        response.update(runner=runner_info, error={"type": problem.kind, "message": problem.message}, calls=[])
        return response
    results = []
    aborted = False
    changed_servers: set = set()
    organization_changed = False
    for call, call_arguments in zip(calls, arguments):
        name = call["cmdlet"]
        mutation = contract.is_mutation(name)
        result = {"id": call.get("id")}
        if aborted and mutation:
            result.update(ok=False, skipped=True)
            results.append(result)
            continue
        spec = cmdlets.REGISTRY.get(name)
        ctx = None
        try:
            if spec is None or (spec.exchange and load == "none") or (
                    spec.exchange and load == "remote_exchange" and not rbac.imported(server, name)):
                raise errors.command_not_found(name)
            server.count_call(name)
            if spec.exchange and not server.directory_reachable(load):
                raise errors.ad_unavailable(name, server.org.domain_controller)
            if name in errors.CERTIFICATE_TASKS and load == "snapin" and not server.session.get(
                    "snapin_certificate_tasks", True):
                raise errors.snapin_certificate_task_error(name)
            if server.fault_fires(name):
                raise errors.injected_fault(name, server.faults[name.lower()].message)
            bound = params.bind(name, spec.params, spec.should_process, call_arguments)
            ctx = CallContext(server, name, spec, bound, user=user)
            objects = server.replicated_read(name, call_arguments, lambda: spec.handler(ctx, bound))
            if spec.exchange:
                objects = server.session_shape(load, objects)
        except errors.CmdletError as error:
            result.update(ok=False, error=error.to_json())
            if mutation:
                server.record_mutation(name, call_arguments, error=error, changes=ctx.changes if ctx else [])
            if mutation or call.get("expect") is not None:
                aborted = True
            results.append(result)
            continue
        properties = call.get("properties") or []
        result.update(ok=True, objects=[select(obj, properties) for obj in objects] if properties else [])
        if call.get("expect") is not None and not _guard_matches(objects, call["expect"]):
            result["guard_failed"] = True
            aborted = True
        if mutation:
            server.record_mutation(name, call_arguments, changes=ctx.changes, what_if=ctx.what_if)
            if ctx.changes and not ctx.what_if:
                server.reads_lag()
            changed_servers |= ctx.touched
            organization_changed |= ctx.organization_changed
        results.append(result)
    server.after_mutations(changed_servers, organization_changed)
    runner_info["elapsed_ms"] = int((time.perf_counter() - started) * 1000) + runner_info["load_ms"]
    response["runner"] = runner_info
    response["calls"] = results
    return response


def parameters_for_log(arguments: dict) -> dict:
    """Parameters as the mutation log keeps them (JSON-able; byte[] as its length, not its content)."""
    return convert({key: "byte[%d]" % len(value) if isinstance(value, (bytes, bytearray)) else value
                    for key, value in (arguments or {}).items()})

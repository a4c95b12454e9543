# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""server_preflight: what one read-only round trip tells about whether the collection can work on a server.

calls() names the reads; evaluate() turns the runner's answer (or the error that replaced it) into
checks ({name, status ok|warning|failed, detail}), readiness for audit and enforce, and facts;
diagnostics() builds the file a user attaches to a bug report. Pure Python, no Ansible imports.

Sources:
- Exchange versions and the end of extended support: _model.exchange_product / END_OF_SUPPORT.
- RBAC: the cmdlet reference of Get-ManagementRole (-Cmdlet "returns a list of all roles that include the
  specified cmdlet") and Get-ManagementRoleAssignment (-RoleAssignee "returns both direct role
  assignments to the role assignee, and indirect role assignments granted to a role assignee through
  role groups or assignment policies"; -Delegating $false leaves out delegating assignments, which let
  their assignee hand a role on but not use it). Write scopes are not evaluated.
- "Edge Transport servers don't use Role Based Access Control (RBAC)": members of the server's local
  Administrators group manage it (Exchange 2013 help, "Mail flow permissions").
- Get-WinEvent answers an empty selection with the error NoMatchingEventsFound, which is not a failure
  (docs/wire-contract.md).
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import hashlib
import json
import os
import re
from dataclasses import dataclass

from . import _model, _runner, _snapshot

OK, WARNING, FAILED = "ok", "warning", "failed"
STATUSES = (OK, WARNING, FAILED)
PURPOSES = ("audit", "enforce")

# The reads of an audit (plugin_utils/_snapshot.py audit_calls) and the mutations of enforcement.
AUDIT_CMDLETS = (
    "Get-ExchangeServer", "Get-ExchangeCertificate", "Get-TransportService", "Get-SendConnector",
    "Get-ReceiveConnector", "Get-HybridConfiguration", "Get-Queue",
)
ENFORCE_CMDLETS = ("Enable-ExchangeCertificate", "Remove-ExchangeCertificate", "Set-SendConnector", "Set-ReceiveConnector")
RBAC_CMDLETS = AUDIT_CMDLETS + ENFORCE_CMDLETS

HOST_PROPERTIES = ("ComputerName", "Fqdn", "Domain", "PowerShellVersion", "OSVersion", "Culture",
                   "PSEdition", "LanguageMode", "UserName")
SERVER_PROPERTIES = ("Name", "Fqdn", "AdminDisplayVersion", "ServerRole", "Edition", "IsEdgeServer")
TLS_PROPERTIES = _snapshot.TLS_PROPERTIES + ("Tls12ClientDisabledByDefault", "Tls12ServerDisabledByDefault")
ASSIGNMENT_PROPERTIES = ("Name", "Role", "RoleAssigneeName", "RoleAssigneeType", "AssignmentMethod", "Enabled")
# The audit reads other than the two the preflight reads in full: run for real, one property each, so
# that "audit ready" rests on the cmdlets having run, not only on what RBAC says.
PROBES = {
    "Get-TransportService": ("probe_transport", {"Identity": _snapshot.COMPUTERNAME}),
    "Get-SendConnector": ("probe_send_connectors", {}),
    "Get-ReceiveConnector": ("probe_receive_connectors", {"Server": _snapshot.COMPUTERNAME}),
    "Get-HybridConfiguration": ("probe_hybrid", {}),
    "Get-Queue": ("probe_queues", {"Server": _snapshot.COMPUTERNAME}),
}

LANGUAGE_MODE_ERROR = "LanguageMode"  # RequestFailed.error_type of a host in ConstrainedLanguage mode

KNOWN_LOADS = ("present", "snapin", "edge", "remote_exchange")

REDACTED = "********"
# Properties whose values are certificate bodies: diagnostics keep only their thumbprints.
CERTIFICATE_BODIES = ("RawData", "ChainRawData")


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail}


# ---------------------------------------------------------------------------------------------
# The request
# ---------------------------------------------------------------------------------------------


def calls(rbac_user: str | None) -> list:
    """Every read of the preflight, in the order the runner executes them (one read-only round trip)."""
    request_calls = [
        _snapshot.call("host", "Get-HybridmailHost", HOST_PROPERTIES),
        _snapshot.call("server", "Get-ExchangeServer", SERVER_PROPERTIES, Identity=_snapshot.COMPUTERNAME),
        _snapshot.call("certificates", "Get-ExchangeCertificate", _snapshot.CERTIFICATE_PROPERTIES, Server=_snapshot.COMPUTERNAME),
    ]
    for cmdlet, (call_id, parameters) in PROBES.items():
        request_calls.append(_snapshot.call(call_id, cmdlet, ("Identity",), **parameters))
    request_calls += [
        _snapshot.call("tls", "Get-HybridmailTlsState", TLS_PROPERTIES),
        _snapshot.call("setting_overrides", _snapshot.SETTING_OVERRIDES_CMDLET, _snapshot.SETTING_OVERRIDE_PROPERTIES),
        # Any one event proves read access; an empty log answers NoMatchingEventsFound.
        _snapshot.call("application_log", "Get-WinEvent", ("Id", "ProviderName", "TimeCreated"),
                       LogName="Application", MaxEvents=1),
    ]
    for index, cmdlet in enumerate(RBAC_CMDLETS):
        request_calls.append(_snapshot.call("roles_%d" % index, "Get-ManagementRole", ("Name", "RoleType"), Cmdlet=cmdlet))
    if rbac_user:
        request_calls.append(_snapshot.call("assignments", "Get-ManagementRoleAssignment", ASSIGNMENT_PROPERTIES,
                                            RoleAssignee=rbac_user, Delegating=False))
    return request_calls


def request(rbac_user: str | None, session_load: str = "auto") -> dict:
    return _snapshot.request(calls(rbac_user), read_only=True, session_load=session_load)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _one_line(text) -> str:
    return " ".join(str(text if text is not None else "").split())


def _error_text(error: dict | None) -> str:
    error = error or {}
    text = "%s: %s" % (error.get("type") or "error", _one_line(error.get("message")))
    if error.get("fqid"):
        text += " [%s]" % error["fqid"]
    return text


def _is_fqid(error: dict | None, fqid: str) -> bool:
    value = (error or {}).get("fqid") or ""
    return value == fqid or value.split(",")[0] == fqid.split(",")[0]


def account_name(user) -> str:
    """The account part of DOMAIN\\user, user@realm or user, lower case (for comparing user names)."""
    text = str(user or "").strip()
    text = text.rsplit("\\", 1)[-1]
    return text.split("@", 1)[0].lower()


def _version_tuple(text) -> tuple:
    parts = []
    for part in str(text or "").split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


class _Results:
    def __init__(self, response: dict):
        self.by_id = {entry.get("id"): entry for entry in response.get("calls") or () if isinstance(entry, dict)}

    def entry(self, call_id: str) -> dict | None:
        return self.by_id.get(call_id)

    def objects(self, call_id: str) -> list | None:
        """The objects of a call that ran; None when it failed or did not answer."""
        entry = self.by_id.get(call_id)
        if entry is None or entry.get("ok") is not True:
            return None
        return [obj for obj in entry.get("objects") or () if isinstance(obj, dict)]

    def error(self, call_id: str) -> dict | None:
        entry = self.by_id.get(call_id)
        if entry is None:
            return {"type": "NoResult", "message": "the runner returned no result for this call"}
        if entry.get("ok") is True:
            return None
        if entry.get("skipped"):
            return {"type": "Skipped", "message": "the call was skipped"}
        return entry.get("error") or {"type": "error", "message": "failed without an error record"}


def _powershell_check(host_object: dict, runner: dict) -> tuple:
    version = host_object.get("PowerShellVersion") or runner.get("powershell")
    edition = host_object.get("PSEdition")
    facts = {"version": version, "edition": edition}
    if not version:
        return Check("powershell", WARNING, "the runner did not report the PowerShell version"), facts
    label = "%s (%s)" % (version, edition or "edition not reported")
    if edition and str(edition).lower() == "core":
        return Check("powershell", FAILED, "PowerShell %s: the Exchange cmdlets need Windows PowerShell (Desktop edition, 5.1)"
                     % label), facts
    if _version_tuple(version)[:2] < (5, 1):
        return Check("powershell", WARNING, "PowerShell %s: the runner is written and reviewed for Windows PowerShell 5.1"
                     % label), facts
    return Check("powershell", OK, "PowerShell %s" % label), facts


def _language_mode_check(host_object: dict) -> tuple:
    mode = host_object.get("LanguageMode")
    if mode is None:
        return Check("language_mode", OK, "not reported by this runner; the runner ran to its result line, which "
                     "ConstrainedLanguage and the restricted Microsoft.Exchange endpoint do not allow"), None
    if str(mode) == "FullLanguage":
        return Check("language_mode", OK, "FullLanguage"), mode
    return Check("language_mode", FAILED, "%s: the runner needs FullLanguage" % mode), mode


def _session_user_check(host_object: dict, rbac_user: str | None) -> tuple:
    user = host_object.get("UserName")
    if not user:
        detail = "not reported by this runner"
        if rbac_user:
            detail += "; RBAC was checked for the connection user %s" % rbac_user
        return Check("session_user", OK, detail), None
    if rbac_user and account_name(user) != account_name(rbac_user):
        return Check("session_user", WARNING, "%s, but RBAC was checked for %s (become, or another account?): "
                     "set rbac_user to the account the session runs as" % (user, rbac_user)), user
    return Check("session_user", OK, str(user)), user


def _exchange_checks(results: _Results, today: datetime.date) -> tuple:
    objects = results.objects("server")
    if not objects:
        error = results.error("server")
        detail = _error_text(error) if error else "Get-ExchangeServer returned no server for this computer"
        failed = Check("exchange_version", FAILED, "Get-ExchangeServer: %s" % detail)
        return [failed, Check("exchange_role", FAILED, "unknown: Get-ExchangeServer did not answer")], {}, None
    server = _model.ExchangeServer.from_object(objects[0])
    product, build = _model.exchange_product(server.version)
    facts = {"name": server.name, "fqdn": server.fqdn, "admin_display_version": server.version, "product": product,
             "build": build, "edition": server.edition, "roles": sorted(server.roles), "is_edge": server.is_edge}
    checks = []
    if product is None:
        checks.append(Check("exchange_version", WARNING, "unrecognised AdminDisplayVersion %r" % server.version))
    else:
        end = _model.END_OF_SUPPORT.get(product)
        facts["end_of_support"] = end.isoformat() if end else None
        facts["supported"] = bool(end and today <= end)
        if product in ("Exchange Server 2007", "Exchange Server 2010"):
            checks.append(Check("exchange_version", FAILED, "%s (%s): out of support since %s; the collection supports "
                                "Exchange 2013 and later" % (product, build, end.isoformat())))
        elif end and today > end:
            checks.append(Check("exchange_version", WARNING, "%s (%s): out of support since %s" % (product, build, end.isoformat())))
        else:
            checks.append(Check("exchange_version", OK, "%s (%s)" % (product, build)))
    role = "Edge" if server.is_edge else ", ".join(sorted(server.roles)) or "unknown"
    checks.append(Check("exchange_role", OK if server.roles or server.is_edge else WARNING,
                        "Edge Transport" if server.is_edge else role))
    return checks, facts, server


def _loading_check(runner: dict, is_edge: bool = False) -> tuple:
    load = runner.get("load")
    load_ms, elapsed_ms = runner.get("load_ms"), runner.get("elapsed_ms")
    facts = {"load": load, "load_ms": load_ms, "elapsed_ms": elapsed_ms}
    took = ("in %s ms" % load_ms) if load_ms is not None else (
        "load time not reported; the whole request took %s ms on the server" % elapsed_ms if elapsed_ms is not None
        else "no timing reported")
    if load in KNOWN_LOADS:
        # _enforce.mutation_session: certificate changes load remote_exchange, which this round trip did not try.
        untried = ("; enforcement runs certificate changes in a remote_exchange session, not tried here (run the preflight "
                   "with exchange_session remote_exchange to try it)" if load != "remote_exchange" and not is_edge else "")
        return Check("cmdlet_loading", OK, "%s, %s%s" % (load, took, untried)), facts
    if load == "none":
        return Check("cmdlet_loading", FAILED, "the runner loaded no Exchange cmdlets although the request needs them"), facts
    return Check("cmdlet_loading", WARNING, "the runner reported an unknown load method %r" % (load,)), facts


def _second_hop_check(results: _Results, runner: dict, is_edge: bool, user) -> Check:
    """Whether the Exchange cmdlets reached Active Directory as the session's user (_runner.SECOND_HOP_MARKERS)."""
    exchange_calls = ["server", "certificates"] + [call_id for call_id, _parameters in PROBES.values()]
    exchange_calls += ["roles_%d" % index for index in range(len(RBAC_CMDLETS))] + ["assignments"]
    for call_id in exchange_calls:
        entry = results.entry(call_id)
        error = results.error(call_id) if entry is not None else None
        if error and _runner.second_hop_advice(error.get("message")):
            return Check("second_hop", FAILED, "%s: %s; %s" % (
                entry.get("cmdlet") or call_id, _error_text(error), _runner.SECOND_HOP_ADVICE))
    if is_edge:
        return Check("second_hop", OK, "Edge Transport: local accounts and the local AD LDS instance, no second hop")
    if results.objects("server") is None:
        return Check("second_hop", WARNING, "not known: Get-ExchangeServer did not answer")
    return Check("second_hop", OK, "the Exchange cmdlets (%s session) reached Active Directory as %s"
                 % (runner.get("load") or "an unknown", user or "the session user"))


def _audit_reads_check(results: _Results, is_edge: bool) -> tuple:
    """Whether every cmdlet of an audit ran (the preflight runs each of them once)."""
    failed = {}
    for cmdlet in AUDIT_CMDLETS:
        call_id = {"Get-ExchangeServer": "server", "Get-ExchangeCertificate": "certificates"}.get(cmdlet) or PROBES[cmdlet][0]
        error = results.error(call_id)
        if error is None:
            continue
        not_a_command = _is_fqid(error, _snapshot.COMMAND_NOT_FOUND)
        if cmdlet == "Get-HybridConfiguration" and not_a_command and is_edge:
            continue  # not part of the Edge Transport shell; the audit expects that
        failed[cmdlet] = _error_text(error) + (". " + _snapshot.MISSING_PERMISSION if not_a_command else "")
    if failed:
        return Check("audit_reads", FAILED, "; ".join("%s: %s" % item for item in failed.items())), failed
    note = " (Get-HybridConfiguration is not part of the Edge shell)" if is_edge else ""
    return Check("audit_reads", OK, "all %d read cmdlets of an audit ran%s" % (len(AUDIT_CMDLETS), note)), failed


def _rbac(results: _Results, rbac_user: str | None, is_edge: bool) -> dict:
    """{"allowed": {cmdlet: True|False|None}, "roles": {cmdlet: [...]}, "assigned": [...], "problem": str|None}."""
    roles_by_cmdlet: dict = {}
    problems = []
    for index, cmdlet in enumerate(RBAC_CMDLETS):
        objects = results.objects("roles_%d" % index)
        if objects is None:
            roles_by_cmdlet[cmdlet] = None
            problems.append("Get-ManagementRole -Cmdlet %s: %s" % (cmdlet, _error_text(results.error("roles_%d" % index))))
        else:
            roles_by_cmdlet[cmdlet] = sorted({str(obj.get("Name")) for obj in objects if obj.get("Name")})
    assigned = None
    if rbac_user:
        objects = results.objects("assignments")
        if objects is None:
            problems.append("Get-ManagementRoleAssignment -RoleAssignee %s: %s" % (rbac_user, _error_text(results.error("assignments"))))
        else:
            assigned = sorted({str(obj.get("Role")) for obj in objects
                               if obj.get("Role") and obj.get("Enabled") not in (False, "False", "false")})
    else:
        problems.append("no user to check: set rbac_user (the connection has no remote user)")
    assigned_keys = {name.lower() for name in assigned or ()}
    allowed = {}
    for cmdlet, roles in roles_by_cmdlet.items():
        if roles is None or assigned is None:
            allowed[cmdlet] = None
        else:
            allowed[cmdlet] = any(role.lower() in assigned_keys for role in roles)
    edge_not_used = is_edge and all(value is None for value in roles_by_cmdlet.values())
    return {"user": rbac_user, "allowed": allowed, "roles": roles_by_cmdlet, "assigned_roles": assigned,
            "not_used": edge_not_used, "problem": None if edge_not_used else ("; ".join(problems) or None)}


def _rbac_check(name: str, purpose_cmdlets: tuple, rbac: dict, required: bool) -> Check:
    if rbac["not_used"]:
        return Check(name, WARNING, "Edge Transport does not use RBAC: the local Administrators group decides (not checked)")
    allowed = {cmdlet: rbac["allowed"][cmdlet] for cmdlet in purpose_cmdlets}
    denied = [cmdlet for cmdlet, value in allowed.items() if value is False]
    unknown = [cmdlet for cmdlet, value in allowed.items() if value is None]
    who = rbac["user"] or "the session user"
    if denied:
        needed = sorted({role for cmdlet in denied for role in rbac["roles"][cmdlet] or ()})
        detail = "%s may not run %s (no role assignment for %s)" % (
            who, ", ".join(denied), " or ".join(needed) if needed else "any role that includes them")
        return Check(name, FAILED if required else WARNING, detail)
    if unknown:
        return Check(name, WARNING, "could not tell whether %s may run %s: %s" % (who, ", ".join(unknown), rbac["problem"]))
    what = ", ".join(purpose_cmdlets) if len(purpose_cmdlets) <= 4 else "all %d read cmdlets of an audit" % len(purpose_cmdlets)
    return Check(name, OK, "%s may run %s (write scopes not evaluated)" % (who, what))


def _application_log_check(results: _Results) -> Check:
    objects = results.objects("application_log")
    if objects is not None:
        return Check("application_log", OK, "readable (%d event read)" % len(objects))
    error = results.error("application_log")
    if _is_fqid(error, _snapshot.NO_EVENTS_FQID):
        return Check("application_log", OK, "readable (no events in it)")
    return Check("application_log", WARNING, "Get-WinEvent -LogName Application failed: %s; the audit then has no "
                 "Event 2004 evidence (grant e.g. Event Log Readers)" % _error_text(error))


def _tls_check(results: _Results) -> tuple:
    objects = results.objects("tls")
    if not objects:
        error = results.error("tls")
        return Check("tls", WARNING, "Get-HybridmailTlsState: %s" % (_error_text(error) if error else "no answer")), None
    state = objects[0]
    facts = {key: state.get(key) for key in TLS_PROPERTIES}
    off = [key for key in ("Tls12ClientEnabled", "Tls12ServerEnabled", "StrongCryptoNet4") if state.get(key) is False]
    off += [key for key in ("Tls12ClientDisabledByDefault", "Tls12ServerDisabledByDefault") if state.get(key) is True]
    described = ", ".join("%s=%s" % (key, "absent (default)" if state.get(key) is None else state.get(key))
                          for key in ("Tls12ClientEnabled", "Tls12ServerEnabled", "StrongCryptoNet4"))
    if off:
        return Check("tls", WARNING, "TLS 1.2 or strong crypto is off (%s); Exchange Online needs TLS 1.2" % ", ".join(off)), facts
    return Check("tls", OK, described), facts


def _ecc_support_check(results: _Results, server) -> tuple:
    """Exchange's ECC certificate support as the audit reads it (_model.ecc_support): a warning when unknown, since
    enforcement then enables no ECC certificate; off is only a fact (RSA certificates need no support)."""
    if server is None:
        return Check("ecc_support", WARNING, "not known: Get-ExchangeServer did not answer"), None
    overrides = results.objects("setting_overrides")
    error = results.error("setting_overrides") if overrides is None else None
    tls = results.objects("tls")
    state, why = _model.ecc_support(overrides, tls[0] if tls else None, server.name, server.is_edge)
    if state is None and not server.is_edge:
        detail = "%s%s" % (why, ": Get-SettingOverride: %s" % _error_text(error) if error else "")
        return Check("ecc_support", WARNING, detail + "; enforcement enables no certificate with an ECC key here"), state
    return Check("ecc_support", OK, why), state


def _certificate_check(results: _Results) -> tuple:
    objects = results.objects("certificates")
    if objects is None:
        return Check("certificate_read", FAILED, "Get-ExchangeCertificate: %s" % _error_text(results.error("certificates"))), None
    certificates = [_model.Certificate.from_object(obj) for obj in objects]
    broken = [(c.thumbprint or "?", c.parse_error) for c in certificates if c.parse_error]
    facts = {"count": len(certificates), "parsed": len(certificates) - len(broken),
             "thumbprints": [c.thumbprint for c in certificates],
             "parse_errors": [{"thumbprint": t, "error": e} for t, e in broken]}
    if broken:
        return Check("certificate_read", FAILED, "%d of %d certificates' RawData could not be parsed: %s" % (
            len(broken), len(certificates), "; ".join("%s: %s" % item for item in broken))), facts
    if not certificates:
        return Check("certificate_read", WARNING, "Get-ExchangeCertificate returned no certificate (every Exchange "
                     "server has at least its self-signed one)"), facts
    return Check("certificate_read", OK, "%d certificates, RawData of each parsed" % len(certificates)), facts


def evaluate(response: dict, rbac_user: str | None, today: datetime.date, required_for=PURPOSES) -> dict:
    """Checks, readiness and facts of one server from the runner's decoded, checked response."""
    results = _Results(response)
    runner = response.get("runner") if isinstance(response.get("runner"), dict) else {}
    host_objects = results.objects("host") or [{}]
    host_object = host_objects[0]
    checks = [Check("runner", OK, "one read-only round trip, the result line decoded")]
    powershell, powershell_facts = _powershell_check(host_object, runner)
    language, mode = _language_mode_check(host_object)
    user_check, user = _session_user_check(host_object, rbac_user)
    exchange_checks, exchange_facts, server = _exchange_checks(results, today)
    is_edge = bool(server and server.is_edge)
    loading, loading_facts = _loading_check(runner, is_edge)
    second_hop = _second_hop_check(results, runner, is_edge, user or rbac_user)
    audit_reads, audit_failures = _audit_reads_check(results, is_edge)
    rbac = _rbac(results, rbac_user, is_edge)
    rbac_audit = _rbac_check("rbac_audit", AUDIT_CMDLETS, rbac, "audit" in required_for)
    rbac_enforce = _rbac_check("rbac_enforce", ENFORCE_CMDLETS, rbac, "enforce" in required_for)
    tls, tls_facts = _tls_check(results)
    certificates, certificate_facts = _certificate_check(results)
    ecc, ecc_state = _ecc_support_check(results, server)
    checks += [powershell, language, user_check] + exchange_checks + [
        loading, second_hop, audit_reads, rbac_audit, rbac_enforce, _application_log_check(results), tls, ecc, certificates]

    essential = [c for c in checks if c.name not in ("rbac_audit", "rbac_enforce", "application_log", "tls", "ecc_support")]
    audit_ready = all(c.status != FAILED for c in essential) and rbac_audit.status != FAILED
    enforce_ready = audit_ready and (rbac_enforce.status == OK or (rbac["not_used"] and rbac_enforce.status == WARNING))
    return {
        "checks": [c.to_dict() for c in checks],
        "ready_for": {"audit": audit_ready, "enforce": enforce_ready},
        "facts": {
            "computer_name": host_object.get("ComputerName") or response.get("host"),
            "fqdn": host_object.get("Fqdn"),
            "domain": host_object.get("Domain"),
            "os_version": host_object.get("OSVersion"),
            "culture": host_object.get("Culture"),
            "powershell": powershell_facts,
            "language_mode": mode,
            "session_user": user,
            "exchange": exchange_facts,
            "session": loading_facts,
            "audit_read_failures": audit_failures,
            "rbac": {key: rbac[key] for key in ("user", "allowed", "roles", "assigned_roles", "not_used", "problem")},
            "tls": tls_facts,
            "ecc_support": ecc_state,
            "certificates": certificate_facts,
        },
    }


def failure_result(error_type: str, message: str, check_name: str = "runner") -> dict:
    """Checks and readiness when the round trip gave no usable answer (the error replaces every other check)."""
    return {
        "checks": [Check(check_name, FAILED, _one_line(message)).to_dict()],
        "ready_for": {"audit": False, "enforce": False},
        "facts": {"error_type": error_type},
    }


def no_result_hint(message: str) -> str:
    return ("%s (a session in the restricted Microsoft.Exchange endpoint, which runs no script, answers like this; "
            "the collection needs a normal PowerShell session)" % _one_line(message))


def judge(result: dict, fail_on_warning: bool = False) -> list:
    """The checks that fail the task."""
    bad = (FAILED, WARNING) if fail_on_warning else (FAILED,)
    return [c for c in result["checks"] if c["status"] in bad]


def failure_message(host: str, failing: list) -> str:
    """One line naming the host and the failed checks."""
    named = "; ".join("%s (%s): %s" % (c["name"], c["status"], c["detail"]) for c in failing)
    return _one_line("%s: preflight failed: %s" % (host, named))


def table_lines(host: str, checks: list, host_width: int = 14, name_width: int = 16) -> list:
    """One line per check: host, check, status, detail - what a person reads."""
    return ["%-*s %-*s %-7s %s" % (host_width, host, name_width, c["name"], c["status"], c["detail"]) for c in checks]


# ---------------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------------


def _thumbprint_of(text) -> str:
    try:
        der = base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        return "<not base64: %d chars>" % len(str(text))
    return "<certificate %s, %d bytes>" % (hashlib.sha1(der).hexdigest().upper(), len(der))  # nosec - a thumbprint


def reduce_bodies(document):
    """A copy of document with certificate bodies (RawData, ChainRawData) replaced by their thumbprints."""
    if isinstance(document, dict):
        reduced = {}
        for key, value in document.items():
            if key in CERTIFICATE_BODIES and value is not None:
                reduced[key] = [_thumbprint_of(item) for item in value] if isinstance(value, list) else _thumbprint_of(value)
            else:
                reduced[key] = reduce_bodies(value)
        return reduced
    if isinstance(document, list):
        return [reduce_bodies(item) for item in document]
    return document


def redact(text: str, secrets) -> str:
    for secret in sorted({str(s) for s in secrets if s and len(str(s)) >= 3}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def secret_variants(user, password) -> list:
    """A password and what carries it on the wire (the Basic authorization token)."""
    if not password:
        return []
    variants = [str(password)]
    if user:
        variants.append(base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii"))
    return variants


def diagnostics(host: str, request_document: dict, response: dict | None, error: dict | None, result: dict,
                timings: dict, context: dict) -> dict:
    """The diagnostics document: request, decoded answer with certificate bodies reduced, timings, checks.

    context holds what a bug report needs about the controller (versions, connection plugin name); it
    must not hold connection variables. Secrets are removed by write_diagnostics.
    """
    return {
        "schema": "hybridmail.exchange/preflight-diagnostics",
        "version": 1,
        "host": host,
        "written_at": _model.iso_utc(datetime.datetime.now(datetime.timezone.utc)),
        "context": context,
        "request": reduce_bodies(copy.deepcopy(request_document)),
        "response": reduce_bodies(copy.deepcopy(response)) if response is not None else None,
        "error": error,
        "timings": timings,
        "checks": result.get("checks"),
        "ready_for": result.get("ready_for"),
    }


def write_diagnostics(directory: str, host: str, document: dict, secrets=()) -> str:
    """Write <directory>/<host>-preflight-<UTC time>.json; returns the path."""
    os.makedirs(directory, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host)
    path = os.path.join(directory, "%s-preflight-%s.json" % (safe, stamp))
    text = redact(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False), secrets)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    return path


def write_report(directory: str, host: str, document: dict) -> str:
    """Write the host's preflight result as <directory>/<host>.json (overwritten on every run)."""
    os.makedirs(directory, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host)
    path = os.path.join(directory, "%s.json" % safe)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    return path


def is_surprise(result: dict) -> bool:
    """Whether a diagnostics file is due: a failed check (a runner error is one)."""
    return any(c["status"] == FAILED for c in result["checks"])

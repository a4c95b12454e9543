# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The wire contract with runner.ps1 (docs/wire-contract.md): constants and codecs.

Pure Python, standard library only: the lab loads this file by path to recognise the exact script
the collection sends, so it must not import Ansible or other collection modules.
"""

from __future__ import annotations

import base64
import binascii
import json
import os

WIRE_VERSION = 1
RESULT_PREFIX = "HYBRIDMAIL-RESULT:"
# What runner.ps1 prints instead of a result when it must not run at all, then exit 1:
# HYBRIDMAIL-REFUSED:<reason>:<detail>; the only reason today is LanguageMode (detail: the mode).
REFUSED_PREFIX = "HYBRIDMAIL-REFUSED:"
REQUEST_VARIABLE = "HybridmailRequest"

RUNNER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.ps1")

# Exchange cmdlets the runner may call. Mirrored in runner.ps1 ($AllowedCmdlets); a unit test keeps
# the two lists equal.
EXCHANGE_CMDLETS = (
    "Get-ExchangeServer",
    "Get-ExchangeCertificate",
    "Get-TransportService",
    "Get-SendConnector",
    "Get-ReceiveConnector",
    "Get-HybridConfiguration",
    "Get-Queue",
    "Enable-ExchangeCertificate",
    "Remove-ExchangeCertificate",
    "Set-SendConnector",
    "Set-ReceiveConnector",
    "Import-ExchangeCertificate",
    "Set-HybridConfiguration",
    "Get-ManagementRoleAssignment",
    "Get-ManagementRole",
    "Get-SettingOverride",
)
# Windows cmdlets that need no Exchange session.
WINDOWS_CMDLETS = ("Get-WinEvent",)
# Functions defined inside runner.ps1 itself.
RUNNER_HELPERS = (
    "Get-HybridmailHost",
    "Get-HybridmailCertificateChain",
    "Get-HybridmailTlsState",
)
ALLOWED_CMDLETS = EXCHANGE_CMDLETS + WINDOWS_CMDLETS + RUNNER_HELPERS

SESSION_LOADS = ("auto", "none", "snapin", "remote_exchange")
# Typed parameter values ({"__hybridmail": kind, ...}) and what runner.ps1 makes of them.
TYPED_VALUES = ("computername", "days_ago", "bytes", "secure_string")

# Common PowerShell arguments, identical to ansible.builtin.powershell's so that the winrm (2.19+)
# and psrp connection plugins recognise an already encoded command and do not wrap it again.
POWERSHELL_ARGS = ("PowerShell", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Unrestricted")

# The command line: read the script from stdin and run it. Ansible's own module bootstrap does the
# same; the script itself (header + runner.ps1) never appears on a command line, which keeps it clear
# of the 32k command-line limit and of the shell plugin's line stripping.
BOOTSTRAP = (
    "$ErrorActionPreference = 'Stop'\n"
    "$hybridmailScript = @($input) -join \"`n\"\n"
    "& ([ScriptBlock]::Create($hybridmailScript))\n"
)


# What the second hop looks like from the runner's side: an Exchange task of a local (snap-in) session
# binds to Active Directory as the WinRM user ("Active Directory server <dc> is not available",
# ADTransientException), and Connect-ExchangeServer opens a Kerberos session to http://<server>/PowerShell
# as that user (SEC_E_NO_CREDENTIALS 0x8009030e, "A specified logon session does not exist"). Over NTLM,
# or Kerberos without delegation, the WinRM logon has no credentials to pass on (Ansible's Windows Remote
# Management guide, "Credential Delegation"). The markers are the untranslated parts of those messages.
SECOND_HOP_MARKERS = (("Active Directory server", "is not available"), ("0x8009030e",))
SECOND_HOP_ADVICE = (
    "the Exchange cmdlets reach Active Directory (and Connect-ExchangeServer the server's /PowerShell endpoint) as the "
    "WinRM user, a second hop that NTLM and Kerberos without delegation cannot make: connect with Kerberos and "
    "ansible_winrm_kerberos_delegation: true, or with CredSSP (ansible_winrm_transport: credssp)")


# Connect-ExchangeServer -Auto asks for a server with Read-Host when none accepted its session; PowerShell
# -NonInteractive answers that prompt with this error, which says nothing about why (runner.ps1 [H16] adds
# the errors before it).
NONINTERACTIVE_MESSAGE = "PowerShell is in NonInteractive mode. Read and Prompt functionality is not available."
PROMPT_ADVICE = ("Connect-ExchangeServer found no Exchange server that accepted its session and asked for a server (Read-Host), "
                 "which a non-interactive session refuses: the cause is the error named before that prompt")


def session_load_advice(text) -> str:
    """What a SessionLoadFailed message means beyond its words: the prompt fallback, the second hop."""
    advice = [PROMPT_ADVICE] if NONINTERACTIVE_MESSAGE in str(text or "") else []
    if second_hop_advice(text):
        advice.append("probably " + SECOND_HOP_ADVICE)
    return "; ".join(advice)


def second_hop_advice(text) -> str:
    """SECOND_HOP_ADVICE when an error text looks like the second hop, else ''."""
    text = str(text or "")
    if any(all(marker in text for marker in markers) for markers in SECOND_HOP_MARKERS):
        return SECOND_HOP_ADVICE
    return ""


def is_mutation(cmdlet: str) -> bool:
    """Whether a cmdlet changes state: everything that is not a Get-* read."""
    return not cmdlet.startswith("Get-")


def load_runner_text() -> str:
    with open(RUNNER_PATH, encoding="ascii") as runner_file:
        return runner_file.read()


# Read once, on import: the action plugin is imported by the controller before it forks a worker per
# host, so every worker inherits the text (and its ASCII bytes) instead of reading and encoding it.
_RUNNER_TEXT = load_runner_text()
_RUNNER_BYTES = _RUNNER_TEXT.encode("ascii")


def encode_json(document) -> str:
    """Base64 of the UTF-8 JSON of a document (request or response)."""
    return base64.b64encode(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).decode("ascii")


def decode_json(text: str):
    """Inverse of encode_json; raises ValueError on anything that is not such an encoding."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("not base64 of UTF-8 JSON: %s" % exc) from None


def compose_script(request: dict, runner_text: str | None = None) -> str:
    """The script sent to the server: one line assigning the request, then runner.ps1 unchanged."""
    if runner_text is None:
        runner_text = _RUNNER_TEXT
    return "$%s = '%s'\n%s" % (REQUEST_VARIABLE, encode_json(request), runner_text)


def compose_script_bytes(request: dict) -> bytes:
    """compose_script(request) as the ASCII bytes sent on stdin, without re-encoding runner.ps1."""
    return ("$%s = '%s'\n" % (REQUEST_VARIABLE, encode_json(request))).encode("ascii") + _RUNNER_BYTES


def encode_command(script: str) -> str:
    """A PowerShell command line running script, as ansible.builtin.powershell encodes one."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return " ".join(POWERSHELL_ARGS + ("-EncodedCommand", encoded))


_ENCODED_BOOTSTRAP = encode_command(BOOTSTRAP)


def encoded_bootstrap() -> str:
    return _ENCODED_BOOTSTRAP


def find_result(stdout: str):
    """The base64 payload of the last result line in stdout, or None when there is none."""
    payload = None
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith(RESULT_PREFIX):
            payload = line[len(RESULT_PREFIX):]
    return payload


def find_refusal(stdout: str):
    """(reason, detail) of a HYBRIDMAIL-REFUSED:<reason>:<detail> line in stdout, or None."""
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith(REFUSED_PREFIX):
            reason, _separator, detail = line[len(REFUSED_PREFIX):].partition(":")
            return reason, detail
    return None


# ---------------------------------------------------------------------------------------------
# Typed values and the request check (the controller's side of the runner's checks)
# ---------------------------------------------------------------------------------------------


def bytes_value(data: bytes) -> dict:
    """A parameter value the runner passes as [byte[]] (e.g. Import-ExchangeCertificate -FileData)."""
    return {"__hybridmail": "bytes", "value": base64.b64encode(bytes(data)).decode("ascii")}


def secure_string_value(text: str) -> dict:
    """A parameter value the runner passes as a SecureString (e.g. -Password); the text travels in the
    request like every other value (base64 JSON over the connection), so keep requests out of logs."""
    return {"__hybridmail": "secure_string", "value": str(text)}


class RequestError(ValueError):
    """A request the runner would refuse (kind "RequestRefused") or reject (kind "BadRequest")."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def _check_value(value, where: str) -> None:
    if isinstance(value, dict):
        if "__hybridmail" not in value:
            for key, item in value.items():
                _check_value(item, "%s.%s" % (where, key))
            return
        kind, given = value.get("__hybridmail"), value.get("value")
        if kind not in TYPED_VALUES:
            raise RequestError("BadRequest", "%s: unknown typed value %r" % (where, kind))
        if kind == "days_ago" and (isinstance(given, bool) or not isinstance(given, int)):
            raise RequestError("BadRequest", "%s: days_ago needs an integer value, got %r" % (where, given))
        if kind == "bytes":
            try:
                base64.b64decode(given if isinstance(given, str) else None, validate=True)
            except (TypeError, binascii.Error):
                raise RequestError("BadRequest", "%s: bytes needs a base64 string value" % where) from None
        if kind == "secure_string" and not isinstance(given, str):
            raise RequestError("BadRequest", "%s: secure_string needs a string value" % where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, "%s[%d]" % (where, index))


def check_request(request) -> None:
    """Raise RequestError for a request runner.ps1 would not run as meant; return None when it is fine.

    The runner itself re-checks only what keeps the server safe (allow-list, read-only, variables);
    the shape is checked here, on the controller, where it is tested.
    """
    if not isinstance(request, dict):
        raise RequestError("BadRequest", "the request is not a JSON object")
    version = request.get("version")
    if isinstance(version, bool) or version != WIRE_VERSION:
        raise RequestError("BadRequest", "unsupported request version %r (this runner speaks %d)" % (version, WIRE_VERSION))
    if not isinstance(request.get("read_only"), bool):
        raise RequestError("BadRequest", "read_only must be true or false")
    session = request.get("session")
    if not isinstance(session, dict) or session.get("load") not in SESSION_LOADS:
        raise RequestError("BadRequest", "session.load must be one of %s" % ", ".join(SESSION_LOADS))
    calls = request.get("calls")
    if not isinstance(calls, list):
        raise RequestError("BadRequest", "calls must be a list")
    ids = set()
    for index, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("cmdlet"), str):
            raise RequestError("BadRequest", "call %d has no cmdlet" % index)
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id or call_id in ids:
            raise RequestError("BadRequest", "call %d needs a unique, non-empty string id" % index)
        ids.add(call_id)
        parameters = call.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise RequestError("BadRequest", "call %s: parameters must be an object" % call_id)
        for name, value in parameters.items():
            if name.lower().endswith("variable") or name.lower() == "outbuffer":
                raise RequestError("BadRequest", "call %s: parameter %s is not allowed" % (call_id, name))
            _check_value(value, "call %s: parameter %s" % (call_id, name))
        properties = call.get("properties") or []
        if not isinstance(properties, list) or not all(isinstance(name, str) for name in properties):
            raise RequestError("BadRequest", "call %s: properties must be a list of names" % call_id)
        expect = call.get("expect")
        if expect is not None:
            if is_mutation(call["cmdlet"]):
                raise RequestError("BadRequest", "call %s: expect is only allowed on Get-* calls" % call_id)
            if not isinstance(expect, list) or not all(isinstance(row, dict) for row in expect):
                raise RequestError("BadRequest", "call %s: expect must be a list of objects" % call_id)
    for call in calls:
        if call["cmdlet"] not in ALLOWED_CMDLETS:
            raise RequestError("RequestRefused", "call %s: %s is not allowed" % (call["id"], call["cmdlet"]))
        if request["read_only"] and is_mutation(call["cmdlet"]):
            raise RequestError("RequestRefused", "call %s: %s is not allowed in a read-only request"
                               % (call["id"], call["cmdlet"]))

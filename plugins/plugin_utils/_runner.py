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
import re

WIRE_VERSION = 1
RESULT_PREFIX = "HYBRIDMAIL-RESULT:"
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
    "Get-ManagementRole",
    "Get-ManagementRoleAssignment",
    "Enable-ExchangeCertificate",
    "Remove-ExchangeCertificate",
    "Set-SendConnector",
    "Set-ReceiveConnector",
    "Import-ExchangeCertificate",
    "Set-HybridConfiguration",
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

SESSION_LOADS = ("auto", "none", "snapin", "e2010", "remote_exchange")

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

_HEADER_RE = re.compile(r"\A\$" + REQUEST_VARIABLE + r" = '([A-Za-z0-9+/=]*)'\r?\n")


def is_mutation(cmdlet: str) -> bool:
    """Whether a cmdlet changes state: everything that is not a Get-* read."""
    return not cmdlet.startswith("Get-")


def load_runner_text() -> str:
    with open(RUNNER_PATH, encoding="ascii") as runner_file:
        return runner_file.read()


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
        runner_text = load_runner_text()
    return "$%s = '%s'\n%s" % (REQUEST_VARIABLE, encode_json(request), runner_text)


def split_script(script: str):
    """Inverse of compose_script: (request_base64, runner_text), or None when the header is absent."""
    match = _HEADER_RE.match(script)
    if match is None:
        return None
    return match.group(1), script[match.end():]


def encode_command(script: str) -> str:
    """A PowerShell command line running script, as ansible.builtin.powershell encodes one."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return " ".join(POWERSHELL_ARGS + ("-EncodedCommand", encoded))


def encoded_bootstrap() -> str:
    return encode_command(BOOTSTRAP)


def find_result(stdout: str):
    """The base64 payload of the last result line in stdout, or None when there is none."""
    payload = None
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith(RESULT_PREFIX):
            payload = line[len(RESULT_PREFIX):]
    return payload


def result_line(response: dict) -> str:
    return RESULT_PREFIX + encode_json(response)


def canonical(value) -> str:
    """The canonical string of a converted value, as the runner computes it for guards."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "\n".join(canonical(item) for item in value)
    return str(value)


def canonical_rows(objects, properties) -> list:
    """Sorted canonical rows of objects over properties: what a guard compares."""
    return sorted("\x1f".join(canonical(obj.get(name)) for name in properties) for obj in objects)

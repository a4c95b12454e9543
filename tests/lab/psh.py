"""PowerShell host emulation: what a WinRM command line plus its stdin produces on a lab server.

The lab does not interpret PowerShell. It recognises exactly three things:
- the collection's script (request header + the shipped runner.ps1, delivered on stdin behind the
  wire contract's bootstrap, or as the encoded command itself): the request is handed to the
  emulated Exchange server and the runner's result line is printed;
- the literal script `exit 0` (what `ansible.builtin.raw: exit 0` sends), to measure Ansible's floor;
- anything else: the error PowerShell prints for an unknown command, exit code 1.

The wire contract (`plugins/plugin_utils/_runner.py`) and runner.ps1 are loaded by file path so the
lab does not depend on Ansible.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import re
from dataclasses import dataclass
from typing import Protocol
from xml.sax.saxutils import escape

from tests.lab import wire


# Classes of commands, counted per server.
KIND_RUNNER = "runner"
KIND_EXIT0 = "raw-exit0"
KIND_OTHER = "other"

# How the runner reached the lab, counted per server (Outcome.delivery): where the script was, then how
# many PowerShell command lines the WinRM command line held, one inside the other. ansible-core 2.19's
# winrm plugin (and psrp) send the bootstrap as it is: "stdin:1"; 2.17/2.18's winrm plugin encodes the
# already encoded bootstrap once more: "stdin:2" (docs/wire-contract.md, "How a request reaches PowerShell").
DELIVERY_STDIN = "stdin"
DELIVERY_COMMAND = "command"

# ansible.builtin.powershell's _encode_script may wrap a script in these two lines.
_STRICT_MODE_LINE = "Set-StrictMode -Version Latest"
_PRESERVE_RC_LINE = (
    "If (-not $?) { If (Get-Variable LASTEXITCODE -ErrorAction SilentlyContinue) { exit $LASTEXITCODE } Else { exit 1 } }"
)
# A decoded command may itself be a PowerShell command line (ansible-core 2.17/2.18 encode the
# collection's already encoded command once more); a bound keeps a malicious nesting cheap.
_MAX_NESTING = 4
_POWERSHELL_EXECUTABLES = ("powershell", "powershell.exe", "pwsh", "pwsh.exe")
# PowerShell.exe parameters that take a value, by the prefix PowerShell accepts for them.
_VALUE_PARAMETERS = ("executionpolicy", "inputformat", "outputformat", "windowstyle", "configurationname", "version")
_CMD_EXIT_RE = re.compile(r"^\s*exit(?:\s+(-?\d+))?\s*$", re.IGNORECASE)
_TOKEN_RE = re.compile(r"[^\s;(){}|&]+")
_BAD_ENCODED_COMMAND = (
    b"Cannot process the command because the value specified with -EncodedCommand is not properly encoded. "
    b"The value must be Base64 encoded.\r\n"
)
_CLIXML_HEADER = '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'


def runner_contract():
    """The collection's plugins/plugin_utils/_runner.py, imported by path (tests/lab/wire.py)."""
    return wire.contract


def normalize_runner_text(text: str) -> str:
    """runner.ps1 as compared: CRLF -> LF and no trailing newlines (nothing else is forgiven)."""
    return text.replace("\r\n", "\n").rstrip("\n")


def load_runner_text() -> str:
    """The shipped runner.ps1, normalised; the lab accepts no other script."""
    return normalize_runner_text(runner_contract().load_runner_text())


class ExchangeServerLike(Protocol):
    name: str
    language_mode: str

    def handle_request(self, request: dict, user: str | None = None) -> dict: ...


@dataclass(frozen=True)
class Outcome:
    stdout: bytes
    stderr: bytes
    exit_code: int
    kind: str
    # KIND_RUNNER only: "<DELIVERY_STDIN or DELIVERY_COMMAND>:<PowerShell command lines>", e.g. "stdin:2".
    delivery: str | None = None


def _normalize_lines(text: str) -> list[str]:
    """Lines as ansible.builtin.powershell's _encode_script leaves them: stripped, none empty."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _unwrap_ansible_lines(lines: list[str]) -> list[str]:
    if lines and lines[0] == _STRICT_MODE_LINE:
        lines = lines[1:]
    if lines and lines[-1] == _PRESERVE_RC_LINE:
        lines = lines[:-1]
    return lines


def _stdin_script(stdin: bytes) -> str:
    """The script PowerShell reads from stdin: lines rejoined with LF (as the bootstrap does)."""
    text = stdin.decode("utf-8", errors="replace").removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines)


def _powershell_script(arguments: list[str], stdin: bytes) -> str | None:
    """The script a PowerShell.exe argument list runs, or None when it names none."""
    index = 0
    while index < len(arguments):
        parameter = arguments[index].lower()
        index += 1
        if not parameter.startswith(("-", "/")):
            # A bare first argument is a command, as with -Command.
            return " ".join(arguments[index - 1 :])
        name = parameter[1:]
        if name in ("e", "ec") or (len(name) > 1 and "encodedcommand".startswith(name)):
            if index >= len(arguments):
                return None
            try:
                return base64.b64decode(arguments[index], validate=True).decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError):
                return None
        elif name and "command".startswith(name):
            rest = arguments[index:]
            if rest == ["-"]:
                return _stdin_script(stdin)
            return " ".join(rest)
        elif name and any(option.startswith(name) for option in _VALUE_PARAMETERS):
            index += 1  # skip the parameter's value
        # Any other parameter is a switch (-NoProfile, -NonInteractive, ...).
    # No command: a non-interactive PowerShell with redirected input runs what stdin holds.
    return _stdin_script(stdin) if stdin else ""


def _clixml_error(lines: list[str]) -> bytes:
    """stderr of powershell.exe with redirected output: error records serialised as CLIXML."""
    records = "".join('<S S="Error">%s_x000D__x000A_</S>' % escape(line) for line in lines)
    return (_CLIXML_HEADER + records + "</Objs>").encode("utf-8")


def command_not_found(script: str) -> bytes:
    """PowerShell's CommandNotFoundException for the first command word of script."""
    lines = script.splitlines() or [""]
    line_number = next((number for number, line in enumerate(lines) if line.strip()), 0)
    line = lines[line_number]
    match = _TOKEN_RE.search(line)
    term, column = (match.group(0), match.start()) if match else ("", 0)
    return _clixml_error(
        [
            "%s : The term '%s' is not recognized as the name of a cmdlet, function, script file, or operable "
            "program. Check the spelling of the name, or if a path was included, verify that the path is correct "
            "and try again." % (term, term),
            "At line:%d char:%d" % (line_number + 1, column + 1),
            "+ %s" % line,
            "+ %s%s" % (" " * column, "~" * len(term)),
            "    + CategoryInfo          : ObjectNotFound: (%s:String) [], CommandNotFoundException" % term,
            "    + FullyQualifiedErrorId : CommandNotFoundException",
            " ",
        ]
    )


class PowerShellHost:
    """Runs command lines for one lab process; runner_text is the only script accepted as the runner."""

    def __init__(self, runner_text: str | None = None):
        self._contract = runner_contract()
        self._given_runner_text = runner_text
        self._bootstrap_lines = _normalize_lines(self._contract.BOOTSTRAP)

    @functools.cached_property
    def _runner_text(self) -> str:
        # Read when first needed: `exit 0` and unknown commands work without runner.ps1.
        if self._given_runner_text is not None:
            return normalize_runner_text(self._given_runner_text)
        return load_runner_text()

    def run(self, command_line: str, stdin: bytes, server: ExchangeServerLike, user: str | None = None) -> Outcome:
        """Run a WinRM command line (rsp:Command and rsp:Arguments joined by a space); user is the
        account the shell was opened with."""
        arguments = command_line.split()
        if not arguments:
            return Outcome(b"", b"", 0, KIND_OTHER)
        executable = arguments[0].rsplit("\\", 1)[-1].lower()
        if executable not in _POWERSHELL_EXECUTABLES:
            # WinRS runs command lines through cmd.exe: its `exit` builtin, or a program it cannot find.
            exit_match = _CMD_EXIT_RE.match(command_line)
            if exit_match:
                return Outcome(b"", b"", int(exit_match.group(1) or 0), KIND_OTHER)
            message = "'%s' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
            return Outcome(b"", (message % arguments[0]).encode("utf-8"), 1, KIND_OTHER)
        script = _powershell_script(arguments[1:], stdin)
        levels = 1
        for _level in range(_MAX_NESTING):
            lines = _unwrap_ansible_lines(_normalize_lines(script or ""))
            if len(lines) != 1 or lines[0].split()[0].lower() not in _POWERSHELL_EXECUTABLES:
                break
            # The inner PowerShell.exe is a child of the outer one and inherits its stdin.
            script = _powershell_script(lines[0].split()[1:], stdin)
            levels += 1
        if script is None:
            return Outcome(b"", _BAD_ENCODED_COMMAND, 1, KIND_OTHER)
        return self.run_script(script, stdin, server, user, levels=levels)

    def run_script(self, script: str, stdin: bytes, server: ExchangeServerLike, user: str | None = None, *,
                   levels: int = 1) -> Outcome:
        lines = _unwrap_ansible_lines(_normalize_lines(script))
        delivery = DELIVERY_COMMAND
        if lines == self._bootstrap_lines:
            script = _stdin_script(stdin)
            lines = _normalize_lines(script)
            delivery = DELIVERY_STDIN
        if lines == ["exit 0"]:
            return Outcome(b"", b"", 0, KIND_EXIT0)
        if not lines:
            return Outcome(b"", b"", 0, KIND_OTHER)
        parts = wire.split_script(script)
        if parts is not None:
            request_b64, runner_text = parts
            if normalize_runner_text(runner_text) == self._runner_text:
                return dataclasses.replace(self._run_runner(request_b64, server, user), delivery="%s:%d" % (delivery, levels))
            return Outcome(b"", self._not_the_runner(runner_text), 1, KIND_OTHER)
        return Outcome(b"", command_not_found(script), 1, KIND_OTHER)

    def _run_runner(self, request_b64: str, server: ExchangeServerLike, user: str | None = None) -> Outcome:
        mode = getattr(server, "language_mode", "FullLanguage")
        if mode != "FullLanguage":
            # runner.ps1's first statement (about_Language_Modes: $ExecutionContext.SessionState.LanguageMode)
            line = wire.refusal_line("LanguageMode", mode)
            return Outcome((line + "\r\n").encode("ascii"), b"", 1, KIND_RUNNER)
        try:
            request = self._contract.decode_json(request_b64)
            if not isinstance(request, dict):
                raise ValueError("the request is not a JSON object")
        except ValueError as exc:
            # runner.ps1 itself reports a request it cannot read, in the normal response shape.
            response = {
                "version": self._contract.WIRE_VERSION,
                "host": server.name,
                "error": {"type": "BadRequest", "message": str(exc)},
                "calls": [],
            }
        else:
            response = server.handle_request(request, user=user)
        stdout = (wire.result_line(response) + "\r\n").encode("ascii")
        return Outcome(stdout, b"", 0, KIND_RUNNER)

    def _not_the_runner(self, runner_text: str) -> bytes:
        """A loud error for a script that has the request header but not the shipped runner.ps1."""
        sent = normalize_runner_text(runner_text).split("\n")
        shipped = self._runner_text.split("\n")
        line = next(
            (number for number, (left, right) in enumerate(zip(sent, shipped)) if left != right),
            min(len(sent), len(shipped)),
        )
        return _clixml_error(
            [
                "hybridmail lab: the script after the request header is not the shipped runner.ps1 "
                "(first difference at runner.ps1 line %d). The lab emulates only the exact runner." % (line + 1),
                "    + CategoryInfo          : NotImplemented: (:) [], NotSupportedException",
                "    + FullyQualifiedErrorId : HybridmailLabUnknownScript",
                " ",
            ]
        )

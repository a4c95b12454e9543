# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run one request through runner.ps1 over the task's own Ansible connection.

One request = one round trip: the composed script (request header + runner.ps1) travels on stdin of
the fixed bootstrap command line (docs/wire-contract.md). Everything that can go wrong is mapped to
one exception class below, and every message names the inventory host:

    RunnerError                 base; .host
      HostUnreachable           the connection failed (the caller marks the host unreachable)
      RunnerOutputError         no / garbage / truncated result line, wrong wire version
      RequestFailed             the runner answered with a whole-request error; .error_type
        BadRequest
        RequestRefused
        SessionLoadFailed       the Exchange cmdlets could not be loaded
        LanguageModeRefused     PowerShell is not in FullLanguage mode; error_type "LanguageMode"

A call that fails is not an exception: its entry in response["calls"] says ok false with the
runner's error record (or skipped, or guard_failed), and the caller reads it there.

Only AnsibleConnectionFailure (and Display for -vvv logging) come from Ansible, so this module unit
tests with a fake connection object.
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.utils.display import Display

from . import _runner

display = Display()

EXCERPT_CHARS = 400
# PowerShell's FullyQualifiedErrorId when ConstrainedLanguage stops a .NET method call: should the
# bootstrap itself be stopped before runner.ps1's own check can print its refusal line, stderr says so.
CONSTRAINED_LANGUAGE_FQID = "MethodInvocationNotSupportedInConstrainedLanguage"


def _transport_exceptions() -> tuple:
    """Exceptions of the HTTP/WinRM/PSRP libraries that mean the host could not be talked to."""
    found = []
    try:
        import requests.exceptions
        found.append(requests.exceptions.RequestException)
    except ImportError:  # pragma: no cover - requests comes with pywinrm and pypsrp
        pass
    try:
        import winrm.exceptions
        found.extend((winrm.exceptions.WinRMError, winrm.exceptions.WinRMTransportError))
    except ImportError:  # pragma: no cover - only needed for the winrm connection
        pass
    try:
        import pypsrp.exceptions
    except ImportError:  # pragma: no cover - only needed for the psrp connection
        pass
    else:  # pragma: no cover
        for name in ("WinRMError", "WinRMTransportError", "AuthenticationError"):
            if isinstance(getattr(pypsrp.exceptions, name, None), type):
                found.append(getattr(pypsrp.exceptions, name))
    return tuple(found)


_TRANSPORT_EXCEPTIONS = _transport_exceptions()


class RunnerError(Exception):
    """Base class: something went wrong running a request on host."""

    def __init__(self, host: str, message: str):
        self.host = host
        self.detail = message
        super().__init__("%s: %s" % (host, message))


class HostUnreachable(RunnerError):
    """The connection to host failed; the caller marks the host unreachable."""


class RunnerOutputError(RunnerError):
    """The runner's output cannot be used: no result line, garbage, truncated, wrong version."""

    def __init__(self, host: str, message: str, rc: int | None = None, stdout: str = "", stderr: str = ""):
        self.rc = rc
        self.stdout_excerpt = _excerpt(stdout, tail=True)
        self.stderr_excerpt = _excerpt(stderr)
        parts = [message]
        if rc is not None:
            parts.append("rc=%s" % rc)
        if self.stderr_excerpt:
            parts.append("stderr: %s" % self.stderr_excerpt)
        if self.stdout_excerpt:
            parts.append("stdout: %s" % self.stdout_excerpt)
        super().__init__(host, "; ".join(parts))


class RequestFailed(RunnerError):
    """The runner refused or could not run the whole request (response "error")."""

    def __init__(self, host: str, error_type: str, error_message: str, message: str | None = None):
        self.error_type = error_type
        self.error_message = error_message
        super().__init__(host, message or "%s: %s" % (error_type, error_message))


class BadRequest(RequestFailed):
    """The runner found the request malformed (a controller-side defect)."""


class RequestRefused(RequestFailed):
    """The runner refused the request: a cmdlet outside the allow-list, or a mutation in read-only mode."""


class SessionLoadFailed(RequestFailed):
    """The runner could not load the Exchange cmdlets on host."""


class LanguageModeRefused(RequestFailed):
    """PowerShell on host runs in another language mode than FullLanguage (AppLocker/WDAC): the runner
    printed HYBRIDMAIL-REFUSED:LanguageMode:<mode> and ran nothing."""

    def __init__(self, host: str, mode: str):
        self.language_mode = mode
        text = ("PowerShell runs in %s mode (AppLocker/WDAC); the runner needs FullLanguage. Nothing was run."
                % (mode or "an unknown language"))
        super().__init__(host, "LanguageMode", text, message=text)


_REQUEST_ERRORS = {
    "BadRequest": BadRequest,
    "RequestRefused": RequestRefused,
    "SessionLoadFailed": SessionLoadFailed,
}


def _excerpt(text: str, limit: int = EXCERPT_CHARS, tail: bool = False) -> str:
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    return "..." + text[-limit:] if tail else text[:limit] + "..."


def _text(data) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return str(data)


def run_request(connection, request: dict, host: str) -> dict:
    """Run request on host over connection; return the decoded, checked response.

    connection is the task's Ansible connection (winrm, psrp or ssh to PowerShell); host is the
    inventory host name used in messages. The response host may differ from it (a NetBIOS name, an
    alias in the inventory): that is logged, not an error. Each entry of response["calls"] gains the
    "cmdlet" of the request call with the same id, so that callers can name it.
    Raises the RunnerError subclasses above.
    """
    calls = request.get("calls") or []
    try:
        _runner.check_request(request)
    except _runner.RequestError as exc:
        # What the runner would answer, said before anything is sent: nothing runs on host.
        raise _REQUEST_ERRORS[exc.kind](host, exc.kind, exc.message) from None
    script = _runner.compose_script_bytes(request)
    command = _runner.encoded_bootstrap()
    display.vvv("hybridmail: %d call(s) [%s], script %d bytes, read_only=%s" % (
        len(calls), ", ".join(str(call.get("cmdlet")) for call in calls), len(script), request.get("read_only")),
        host=host)

    started = time.monotonic()
    try:
        rc, b_stdout, b_stderr = connection.exec_command(command, in_data=script, sudoable=False)
    except AnsibleConnectionFailure as exc:
        raise HostUnreachable(host, "connection failed: %s" % exc) from exc
    except _TRANSPORT_EXCEPTIONS as exc:
        raise HostUnreachable(host, "connection failed: %s: %s" % (type(exc).__name__, exc)) from exc
    except AnsibleError as exc:
        raise RunnerError(host, "running the runner failed: %s" % exc) from exc
    elapsed = time.monotonic() - started

    stdout, stderr = _text(b_stdout), _text(b_stderr)
    display.vvv("hybridmail: rc=%s, stdout %d chars, stderr %d chars, %.2f s" % (rc, len(stdout), len(stderr), elapsed),
                host=host)

    payload = _runner.find_result(stdout)
    refusal = _runner.find_refusal(stdout) if payload is None else None
    if refusal is not None:
        reason, detail = refusal
        if reason == "LanguageMode":
            raise LanguageModeRefused(host, detail)
        raise RequestFailed(host, reason, detail)
    if payload is None and CONSTRAINED_LANGUAGE_FQID in stderr:
        raise LanguageModeRefused(host, "ConstrainedLanguage")
    if payload is None:
        if rc:
            raise RunnerOutputError(host, "the runner exited with rc %s without a result line" % rc, rc, stdout, stderr)
        raise RunnerOutputError(host, "the runner printed no result line", rc, stdout, stderr)
    try:
        response = _runner.decode_json(payload)
    except ValueError as exc:
        raise RunnerOutputError(host, "the result line is garbled or truncated (%d chars): %s" % (len(payload), exc),
                                rc, "", stderr) from None
    if not isinstance(response, dict):
        raise RunnerOutputError(host, "the result is not a JSON object", rc, "", stderr)
    if response.get("version") != _runner.WIRE_VERSION:
        raise RunnerOutputError(host, "the runner speaks wire version %r, expected %d"
                                % (response.get("version"), _runner.WIRE_VERSION), rc)

    runner = response.get("runner") if isinstance(response.get("runner"), dict) else {}
    display.vvv("hybridmail: runner host=%s powershell=%s load=%s elapsed_ms=%s" % (
        response.get("host"), runner.get("powershell"), runner.get("load"), runner.get("elapsed_ms")), host=host)
    if response.get("host") and str(response.get("host")).lower() != str(host).split(".", maxsplit=1)[0].lower():
        display.vvv("hybridmail: inventory host %s answered as %s" % (host, response.get("host")), host=host)

    error = response.get("error")
    if error:
        if not isinstance(error, dict):
            error = {"type": "RequestFailed", "message": str(error)}
        error_type = str(error.get("type") or "RequestFailed")
        error_message = str(error.get("message") or "")
        advice = _runner.session_load_advice(error_message) if error_type == "SessionLoadFailed" else ""
        raise _REQUEST_ERRORS.get(error_type, RequestFailed)(
            host, error_type, error_message, message="%s: %s. %s" % (error_type, error_message, advice[0].upper() + advice[1:])
            if advice else None)

    _check_calls(host, request, response, rc, stderr)
    return response


def _check_calls(host: str, request: dict, response: dict, rc, stderr: str) -> None:
    """The response answers each request call, in order; annotate each entry with its cmdlet."""
    requested = request.get("calls") or []
    answered = response.get("calls")
    if not isinstance(answered, list) or not all(isinstance(entry, dict) for entry in answered):
        raise RunnerOutputError(host, "the result has no list of call results", rc, "", stderr)
    expected_ids = [call.get("id") for call in requested]
    answered_ids = [entry.get("id") for entry in answered]
    if answered_ids != expected_ids:
        raise RunnerOutputError(host, "the result answers calls %r, the request had %r" % (answered_ids, expected_ids),
                                rc, "", stderr)
    for call, entry in zip(requested, answered):
        entry.setdefault("cmdlet", call.get("cmdlet"))
        if entry.get("ok") is True and not isinstance(entry.get("objects"), list):
            raise RunnerOutputError(host, "call %s succeeded without a list of objects" % entry.get("id"), rc, "", stderr)

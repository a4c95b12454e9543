"""_transport: one request over a connection, and how each failure maps to an exception.

FakeConnection stands in for the server end of the connection (it returns scripted rc, stdout,
stderr); the code under test is _transport itself.
"""

import base64
import json

import pytest
from ansible.errors import AnsibleConnectionFailure, AnsibleError

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _runner, _transport
from tests.lab import wire

HOST = "ex01.contoso.com"

REQUEST = {
    "version": 1,
    "read_only": True,
    "session": {"load": "auto"},
    "calls": [
        {"id": "certs", "cmdlet": "Get-ExchangeCertificate",
         "parameters": {"Server": {"__hybridmail": "computername"}},
         "properties": ["Thumbprint", "Subject", "Services"]},
        {"id": "events", "cmdlet": "Get-WinEvent",
         "parameters": {"FilterHashtable": {"LogName": "Application", "ProviderName": "MSExchangeTransport", "Id": 2004,
                                            "StartTime": {"__hybridmail": "days_ago", "value": 7}}},
         "properties": ["Id", "Message"]},
    ],
}

CERTS_OK = {"id": "certs", "ok": True, "objects": [
    {"Thumbprint": "AB12", "Subject": "CN=mail.contoso.com, O=M\u00fcller GmbH", "Services": "IMAP, POP, IIS, SMTP"}]}
EVENTS_NONE = {"id": "events", "ok": False, "error": {
    "type": "System.Exception", "category": "ObjectNotFound",
    "message": "No events were found that match the specified selection criteria.",
    "fqid": "NoMatchingEventsFound,Microsoft.PowerShell.Commands.GetWinEventCommand"}}


def response(calls=None, **extra):
    document = {"version": 1, "host": "EX01",
                "runner": {"powershell": "5.1.17763.5830", "load": "snapin", "elapsed_ms": 2210},
                "calls": [CERTS_OK, EVENTS_NONE] if calls is None else calls}
    document.update(extra)
    return document


class FakeConnection:
    """Records exec_command's arguments; answers with a scripted (rc, stdout, stderr) or raises."""

    def __init__(self, rc=0, stdout=b"", stderr=b"", raises=None):
        self.answer = (rc, stdout, stderr)
        self.raises = raises
        self.calls = []

    def exec_command(self, cmd, in_data=None, sudoable=True):
        self.calls.append({"cmd": cmd, "in_data": in_data, "sudoable": sudoable})
        if self.raises is not None:
            raise self.raises
        return self.answer


def answering(document, rc=0, noise=True):
    lines = []
    if noise:
        lines.append("WARNING: The names of some imported commands include unapproved verbs.")
    lines.append(wire.result_line(document))
    return FakeConnection(rc, ("\r\n".join(lines) + "\r\n").encode("utf-8"), b"")


def run(connection, request=None):
    return _transport.run_request(connection, REQUEST if request is None else request, HOST)


def entry(result, call_id):
    """The response entry of one call, read as the plugins read it (by id)."""
    return {item["id"]: item for item in result["calls"]}[call_id]


def test_success_sends_bootstrap_and_script_on_stdin():
    connection = answering(response())
    result = run(connection)

    assert len(connection.calls) == 1
    sent = connection.calls[0]
    assert sent["cmd"] == _runner.encoded_bootstrap()
    assert sent["in_data"] == _runner.compose_script(REQUEST).encode("ascii")
    assert sent["sudoable"] is False
    request_b64, runner_text = wire.split_script(sent["in_data"].decode("ascii"))
    assert _runner.decode_json(request_b64) == REQUEST
    assert runner_text == _runner.load_runner_text()

    assert result["host"] == "EX01"  # not the inventory name: not an error
    assert [entry["id"] for entry in result["calls"]] == ["certs", "events"]
    assert [entry["cmdlet"] for entry in result["calls"]] == ["Get-ExchangeCertificate", "Get-WinEvent"]
    objects = entry(result, "certs")["objects"]
    assert objects[0]["Subject"] == "CN=mail.contoso.com, O=M\u00fcller GmbH"


def test_success_with_nonzero_rc_and_result_line_is_still_a_result():
    result = run(answering(response(), rc=1))
    assert entry(result, "certs")["objects"][0]["Thumbprint"] == "AB12"


def test_str_stdout_is_accepted():
    connection = answering(response())
    connection.answer = (0, connection.answer[1].decode("utf-8"), "")
    assert run(connection)["version"] == 1


def test_unreachable():
    connection = FakeConnection(raises=AnsibleConnectionFailure("winrm connection error: timed out"))
    with pytest.raises(_transport.HostUnreachable) as caught:
        run(connection)
    assert caught.value.host == HOST
    assert str(caught.value).startswith(HOST + ": ")
    assert "timed out" in str(caught.value)
    assert isinstance(caught.value.__cause__, AnsibleConnectionFailure)


def test_unreachable_from_requests():
    requests = pytest.importorskip("requests")
    connection = FakeConnection(raises=requests.exceptions.ConnectionError("Connection refused"))
    with pytest.raises(_transport.HostUnreachable, match="^%s: .*Connection refused" % HOST):
        run(connection)


def test_unreachable_from_winrm_transport_error():
    winrm_exceptions = pytest.importorskip("winrm.exceptions")
    connection = FakeConnection(raises=winrm_exceptions.WinRMTransportError("http", 500, "Bad HTTP response"))
    with pytest.raises(_transport.HostUnreachable, match=HOST):
        run(connection)


def test_other_ansible_error_is_a_runner_error():
    connection = FakeConnection(raises=AnsibleError("winrm send_input failed"))
    with pytest.raises(_transport.RunnerError, match="^%s: .*send_input failed" % HOST) as caught:
        run(connection)
    assert not isinstance(caught.value, _transport.HostUnreachable)


def test_missing_result_line():
    connection = FakeConnection(0, b"Welcome to the Exchange Management Shell!\r\n", b"")
    with pytest.raises(_transport.RunnerOutputError) as caught:
        run(connection)
    message = str(caught.value)
    assert message.startswith(HOST + ": ")
    assert "no result line" in message
    assert "rc=0" in message
    assert "Welcome to the Exchange Management Shell!" in message
    assert caught.value.rc == 0


def test_nonzero_exit_without_result():
    stderr = ("The term 'Get-ExchangeCertificatee' is not recognized as the name of a cmdlet, function, script file, "
              "or operable program. " * 20).encode("utf-8")
    connection = FakeConnection(1, b"", stderr)
    with pytest.raises(_transport.RunnerOutputError) as caught:
        run(connection)
    message = str(caught.value)
    assert message.startswith(HOST + ": ")
    assert "rc 1 without a result line" in message
    assert "is not recognized" in message
    assert len(caught.value.stderr_excerpt) <= _transport.EXCERPT_CHARS + 3
    assert caught.value.rc == 1


def test_garbage_result_line():
    connection = FakeConnection(0, b"HYBRIDMAIL-RESULT:this is not base64!!\r\n", b"")
    with pytest.raises(_transport.RunnerOutputError, match="^%s: .*garbled or truncated" % HOST):
        run(connection)


def test_truncated_result_line():
    line = wire.result_line(response())
    connection = FakeConnection(0, (line[: len(line) // 2] + "\r\n").encode("ascii"), b"")
    with pytest.raises(_transport.RunnerOutputError, match="^%s: .*garbled or truncated" % HOST):
        run(connection)


def test_truncated_json_in_valid_base64():
    raw = json.dumps(response()).encode("utf-8")[:-20]
    connection = FakeConnection(0, (_runner.RESULT_PREFIX + base64.b64encode(raw).decode()).encode("ascii"), b"")
    with pytest.raises(_transport.RunnerOutputError, match="garbled or truncated"):
        run(connection)


def test_result_not_an_object():
    with pytest.raises(_transport.RunnerOutputError, match="^%s: the result is not a JSON object" % HOST):
        run(answering([1, 2, 3]))


def test_wrong_version():
    with pytest.raises(_transport.RunnerOutputError, match="^%s: .*wire version 2, expected 1" % HOST):
        run(answering(response(version=2)))


def test_refused():
    document = response(calls=[], error={"type": "RequestRefused",
                                         "message": "call rm: Remove-ExchangeCertificate is not allowed in a read-only request"})
    with pytest.raises(_transport.RequestRefused) as caught:
        run(answering(document))
    assert str(caught.value) == (HOST + ": RequestRefused: call rm: Remove-ExchangeCertificate is not allowed in a "
                                 "read-only request")
    assert caught.value.error_type == "RequestRefused"
    assert isinstance(caught.value, _transport.RequestFailed)


def test_session_load_failed():
    document = response(calls=[], error={"type": "SessionLoadFailed",
                                         "message": "cannot load the Exchange cmdlets (snapin: not installed)"})
    with pytest.raises(_transport.SessionLoadFailed, match="^%s: SessionLoadFailed: cannot load" % HOST):
        run(answering(document))


def test_bad_request_and_unknown_request_error():
    with pytest.raises(_transport.BadRequest, match="^%s: BadRequest: " % HOST):
        run(answering(response(calls=[], error={"type": "BadRequest", "message": "calls must be a list"})))
    with pytest.raises(_transport.RequestFailed, match="^%s: RunnerFailed: oops" % HOST) as caught:
        run(answering(response(calls=[], error={"type": "RunnerFailed", "message": "oops"})))
    assert not isinstance(caught.value, (_transport.BadRequest, _transport.RequestRefused, _transport.SessionLoadFailed))


def test_response_not_answering_the_request():
    with pytest.raises(_transport.RunnerOutputError, match="^%s: the result answers calls" % HOST):
        run(answering(response(calls=[CERTS_OK])))
    with pytest.raises(_transport.RunnerOutputError, match="without a list of objects"):
        run(answering(response(calls=[{"id": "certs", "ok": True}, EVENTS_NONE])))


def test_a_failed_call_keeps_the_runners_error_record():
    result = run(answering(response()))
    failed = entry(result, "events")
    assert failed["ok"] is False
    assert failed["cmdlet"] == "Get-WinEvent"
    assert failed["error"]["category"] == "ObjectNotFound"
    assert failed["error"]["fqid"] == "NoMatchingEventsFound,Microsoft.PowerShell.Commands.GetWinEventCommand"


def test_skipped_and_guard_failed_calls():
    request = {"version": 1, "read_only": False, "session": {"load": "auto"}, "calls": [
        {"id": "guard", "cmdlet": "Get-ExchangeCertificate", "parameters": {}, "properties": ["Thumbprint"],
         "expect": [{"Thumbprint": "AB12"}]},
        {"id": "unbind", "cmdlet": "Enable-ExchangeCertificate",
         "parameters": {"Thumbprint": "AB12", "Services": ["IIS"], "Force": True}},
        {"id": "verify", "cmdlet": "Get-ExchangeCertificate", "parameters": {}, "properties": ["Thumbprint"]},
    ]}
    document = response(calls=[
        {"id": "guard", "ok": True, "objects": [{"Thumbprint": "CD34"}], "guard_failed": True},
        {"id": "unbind", "ok": False, "skipped": True},
        {"id": "verify", "ok": True, "objects": [{"Thumbprint": "CD34"}]},
    ])
    result = _transport.run_request(answering(document), request, HOST)
    assert entry(result, "guard")["guard_failed"] is True
    assert entry(result, "unbind") == {"id": "unbind", "ok": False, "skipped": True, "cmdlet": "Enable-ExchangeCertificate"}
    assert entry(result, "verify")["objects"] == [{"Thumbprint": "CD34"}]


def test_vvv_logs_sizes_not_the_script(monkeypatch):
    logged = []
    monkeypatch.setattr(_transport.display, "vvv", lambda msg, host=None: logged.append(msg))
    connection = answering(response())
    run(connection)
    text = "\n".join(logged)
    assert "script %d bytes" % len(connection.calls[0]["in_data"]) in text
    assert "Get-ExchangeCertificate" in text
    request_b64 = wire.split_script(connection.calls[0]["in_data"].decode("ascii"))[0]
    assert request_b64 not in text
    assert "Set-StrictMode" not in text
    assert "load=snapin" in text


def test_exception_hierarchy():
    for cls in (_transport.HostUnreachable, _transport.RunnerOutputError, _transport.RequestFailed):
        assert issubclass(cls, _transport.RunnerError)
    for cls in (_transport.BadRequest, _transport.RequestRefused, _transport.SessionLoadFailed):
        assert issubclass(cls, _transport.RequestFailed)


# ------------------------------------------------------------------ language mode, request check


@pytest.mark.parametrize("mode", ["ConstrainedLanguage", "RestrictedLanguage"])
def test_language_mode_refusal_line(mode):
    stdout = ("WARNING: something\r\n" + wire.refusal_line("LanguageMode", mode) + "\r\n").encode("ascii")
    connection = FakeConnection(1, stdout, b"")
    with pytest.raises(_transport.LanguageModeRefused) as caught:
        run(connection)
    error = caught.value
    assert isinstance(error, _transport.RequestFailed)
    assert error.error_type == "LanguageMode" and error.language_mode == mode and error.host == HOST
    assert str(error) == ("%s: PowerShell runs in %s mode (AppLocker/WDAC); the runner needs FullLanguage. "
                          "Nothing was run." % (HOST, mode))


def test_refusal_line_shape():
    assert wire.refusal_line("LanguageMode", "ConstrainedLanguage") == "HYBRIDMAIL-REFUSED:LanguageMode:ConstrainedLanguage"
    assert _runner.find_refusal("x\r\n  HYBRIDMAIL-REFUSED:LanguageMode:ConstrainedLanguage  \r\n") == (
        "LanguageMode", "ConstrainedLanguage")
    assert _runner.find_refusal("HYBRIDMAIL-RESULT:abc\n") is None


def test_a_result_line_wins_over_a_refusal_text_in_other_output():
    # a refusal line is only believed when there is no result line (the runner prints one or the other)
    stdout = ("HYBRIDMAIL-REFUSED:LanguageMode:ConstrainedLanguage\r\n" + wire.result_line(response()) + "\r\n")
    result = run(FakeConnection(0, stdout.encode("ascii"), b""))
    assert result["host"] == "EX01"


def _with_call(**changes):
    request = json.loads(json.dumps(REQUEST))
    request["calls"][0].update(changes)
    return request


@pytest.mark.parametrize("request_document, kind, message", [
    (dict(REQUEST, version=2), _transport.BadRequest, "unsupported request version 2"),
    (dict(REQUEST, read_only="yes"), _transport.BadRequest, "read_only must be true or false"),
    (dict(REQUEST, session={}), _transport.BadRequest, "session.load must be one of"),
    (_with_call(id=""), _transport.BadRequest, "unique, non-empty string id"),
    (_with_call(parameters={"OutVariable": "x"}), _transport.BadRequest, "parameter OutVariable is not allowed"),
    (_with_call(parameters={"Password": {"__hybridmail": "secure_string", "value": 1}}), _transport.BadRequest,
     "secure_string needs a string value"),
    (_with_call(parameters={"FileData": {"__hybridmail": "bytes", "value": "not base64!"}}), _transport.BadRequest,
     "bytes needs a base64 string value"),
    (_with_call(parameters={"X": {"__hybridmail": "days_ago", "value": "7"}}), _transport.BadRequest,
     "days_ago needs an integer value"),
    (_with_call(properties="Thumbprint"), _transport.BadRequest, "properties must be a list of names"),
    (_with_call(cmdlet="Get-ChildItem"), _transport.RequestRefused, "Get-ChildItem is not allowed"),
    (_with_call(cmdlet="Remove-ExchangeCertificate"), _transport.RequestRefused, "not allowed in a read-only request"),
])
def test_requests_the_runner_would_refuse_are_not_sent(request_document, kind, message):
    connection = answering(response())
    with pytest.raises(kind, match=message) as caught:
        run(connection, request_document)
    assert str(caught.value).startswith(HOST + ": ")
    assert connection.calls == []  # nothing ran on the host


def test_typed_values_pass_the_check():
    request = _with_call(cmdlet="Get-ExchangeCertificate", parameters={
        "Server": {"__hybridmail": "computername"},
        "FileData": _runner.bytes_value(b"\x30\x82\x01\x00"),
        "Password": _runner.secure_string_value("P@ss w\u00f6rd"),
    })
    _runner.check_request(request)
    assert _runner.bytes_value(b"\x00\xff") == {"__hybridmail": "bytes", "value": "AP8="}


def test_composed_bytes_are_the_composed_script():
    assert _runner.compose_script_bytes(REQUEST) == _runner.compose_script(REQUEST).encode("ascii")
    assert _runner.compose_script_bytes(REQUEST).endswith(_runner.load_runner_text().encode("ascii"))


def test_constrained_language_stopping_the_bootstrap_is_named_too():
    # If ConstrainedLanguage stopped the bootstrap's [ScriptBlock]::Create before runner.ps1 could check.
    stderr = ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
              '<S S="Error">Cannot invoke method. Method invocation is supported only on core types in this language '
              'mode._x000D__x000A_</S><S S="Error">    + FullyQualifiedErrorId : '
              'MethodInvocationNotSupportedInConstrainedLanguage_x000D__x000A_</S></Objs>').encode("utf-8")
    with pytest.raises(_transport.LanguageModeRefused, match="ConstrainedLanguage mode .AppLocker/WDAC.; the runner needs"):
        run(FakeConnection(1, b"", stderr))

"""WS-Man SOAP parsing and serialisation against the clients' own code.

Requests are built by pywinrm's Protocol and by ansible-core's winrm plugin (its Send and Receive
are its own), and the lab's answers are parsed back by the same code, without any network.
"""

from __future__ import annotations

import base64

import pytest
from ansible.plugins.connection.winrm import Connection
from winrm.exceptions import WinRMOperationTimeoutError, WinRMTransportError, WSManFaultError
from winrm.protocol import Protocol

from tests.lab import wsman


class ScriptedProtocol(Protocol):
    """pywinrm's Protocol, with the HTTP transport replaced by a function of the request."""

    def __init__(self, answer):
        super().__init__("http://127.0.0.1:5985/wsman", transport="basic", username="u", password="p")
        self.answer = answer
        self.sent: list[wsman.WsmanRequest] = []
        self.transport.send_message = self._send

    def _send(self, message):
        request = wsman.parse_request(message.encode("utf-8"))
        self.sent.append(request)
        return self.answer(request)


def fails_with(fault: wsman.WsmanFault):
    def answer(request):
        raise WinRMTransportError("http", 500, fault.to_xml(request.message_id, "ex01.contoso.com").decode("utf-8"))

    return answer


def test_create_shell():
    protocol = ScriptedProtocol(lambda request: wsman.create_response(request, "SHELL-1", "http://x/wsman", "u", "::1"))
    assert protocol.open_shell(codepage=65001) == "SHELL-1"
    request = protocol.sent[0]
    assert request.operation == "Create" and request.resource_uri == wsman.SHELL_RESOURCE_URI
    assert request.options == {"WINRS_NOPROFILE": "FALSE", "WINRS_CODEPAGE": "65001"}
    assert request.operation_timeout == 20 and request.max_envelope == 153600
    assert request.message_id.startswith("uuid:")


def test_command_line_joins_command_and_arguments():
    protocol = ScriptedProtocol(lambda request: wsman.command_response(request, "CMD-1"))
    assert protocol.run_command("SHELL-1", "PowerShell", ["-NoProfile", "-EncodedCommand", "ZQB4AGkAdAAgADAA"]) == "CMD-1"
    request = protocol.sent[0]
    assert (request.operation, request.shell_id) == ("Command", "SHELL-1")
    assert request.command_line == "PowerShell -NoProfile -EncodedCommand ZQB4AGkAdAAgADAA"
    assert request.options["WINRS_CONSOLEMODE_STDIN"] == "TRUE"


@pytest.mark.parametrize("end", [False, True])
def test_send_from_pywinrm(end):
    protocol = ScriptedProtocol(lambda request: wsman.empty_response(request, "<rsp:SendResponse/>"))
    protocol.send_command_input("SHELL-1", "CMD-1", b"\x00\xffdata", end=end)
    request = protocol.sent[0]
    assert (request.operation, request.command_id, request.stdin, request.stdin_end) == ("Send", "CMD-1", b"\x00\xffdata", end)


def test_send_from_ansible_winrm_plugin():
    # ansible-core builds its own Send: no End attribute unless it is the last chunk.
    protocol = ScriptedProtocol(lambda request: wsman.empty_response(request, "<rsp:SendResponse/>"))
    Connection._winrm_send_input(None, protocol, "SHELL-1", "CMD-1", b"chunk", eof=False)
    Connection._winrm_send_input(None, protocol, "SHELL-1", "CMD-1", b"last", eof=True)
    assert [(request.stdin, request.stdin_end) for request in protocol.sent] == [(b"chunk", False), (b"last", True)]


def test_receive_running_then_done_with_chunked_streams():
    answers = iter([([("stdout", b"abc"), ("stdout", b"def")], None), ([("stderr", b"oops")], 3)])

    def answer(request):
        pieces, exit_code = next(answers)
        return wsman.receive_response(request, "CMD-1", pieces, exit_code)

    protocol = ScriptedProtocol(answer)
    assert protocol.get_command_output_raw("SHELL-1", "CMD-1") == (b"abcdef", b"", -1, False)
    assert protocol.get_command_output_raw("SHELL-1", "CMD-1") == (b"", b"oops", 3, True)
    request = protocol.sent[0]
    assert (request.operation, request.shell_id, request.command_id) == ("Receive", "SHELL-1", "CMD-1")


def test_receive_from_ansible_winrm_plugin():
    protocol = ScriptedProtocol(lambda request: wsman.receive_response(request, "CMD-1", [("stdout", b"hi")], 0))
    assert Connection._winrm_get_raw_command_output(None, protocol, "SHELL-1", "CMD-1") == (b"hi", b"", 0, True)


def test_signal_and_delete_answer_to_the_message_id():
    # pywinrm asserts that RelatesTo names the request's MessageID.
    protocol = ScriptedProtocol(lambda request: wsman.empty_response(request, "<rsp:SignalResponse/>"))
    protocol.cleanup_command("SHELL-1", "CMD-1")
    request = protocol.sent[0]
    assert (request.operation, request.command_id) == ("Signal", "CMD-1")
    assert request.signal_code == "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate"

    protocol = ScriptedProtocol(wsman.empty_response)
    protocol.close_shell("SHELL-1")
    assert (protocol.sent[0].operation, protocol.sent[0].shell_id) == ("Delete", "SHELL-1")


def test_timed_out_fault_is_the_one_pywinrm_retries():
    protocol = ScriptedProtocol(fails_with(wsman.timed_out_fault()))
    with pytest.raises(WinRMOperationTimeoutError):
        protocol.get_command_output_raw("SHELL-1", "CMD-1")


def test_shell_not_found_fault():
    protocol = ScriptedProtocol(fails_with(wsman.shell_not_found_fault("SHELL-1")))
    with pytest.raises(WSManFaultError) as raised:
        protocol.run_command("SHELL-1", "PowerShell")
    assert raised.value.wsman_fault_code == wsman.ERROR_WSMAN_INVALID_SELECTORS
    assert (raised.value.fault_code, raised.value.fault_subcode) == ("s:Sender", "w:InvalidSelectors")
    assert "ShellId SHELL-1 failed because the shell was not found" in raised.value.reason


def test_unknown_action_is_parsed_not_rejected():
    message = wsman.envelope("http://schemas.xmlsoap.org/ws/2004/09/transfer/Get", None, "")
    request = wsman.parse_request(message)
    assert request.operation is None and request.action.endswith("/transfer/Get")


@pytest.mark.parametrize("data", [b"not xml", b"<a/>", b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"/>'])
def test_malformed_requests_are_faults(data):
    with pytest.raises(wsman.WsmanFault):
        wsman.parse_request(data)


def test_stdin_that_is_not_base64_is_a_fault():
    protocol = ScriptedProtocol(lambda request: b"")
    protocol.transport.send_message = lambda message: wsman.parse_request(
        message.replace(base64.b64encode(b"data").decode(), "***").encode("utf-8")
    )
    with pytest.raises(wsman.WsmanFault):
        protocol.send_command_input("SHELL-1", "CMD-1", b"data")


@pytest.mark.parametrize(
    "text, seconds",
    [("PT20S", 20), ("PT60.000S", 60), ("PT1M30S", 90), ("P1DT1H", 90000), ("PT0.5S", 0.5), ("", 7), ("P", 7), ("x", 7)],
)
def test_parse_duration(text, seconds):
    assert wsman.parse_duration(text, 7) == seconds

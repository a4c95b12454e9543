"""The WinRM listeners in-process, over real sockets, with pywinrm as the client."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time

import pytest
import requests
import winrm
from winrm.exceptions import InvalidCredentialsError, WinRMTransportError, WSManFaultError

from tests.lab import psh, wsman
from tests.lab.auth import Authenticator
from tests.lab.tlsca import create_listener_certificates

RUNNER = psh.runner_contract()
RUNNER_TEXT = "Write-Output 'stand-in runner'\n"
USER, PASSWORD = "Administrator", "Lab-Passw0rd!"


class FakeExchangeServer:
    """The Exchange emulation's interface, answering with a response of a chosen size."""

    def __init__(self, name: str, padding: int = 0):
        self.name = name
        self.fqdn = name.lower() + ".contoso.com"
        self.padding = padding

    def handle_request(self, request: dict, user: str | None = None) -> dict:
        return {"version": 1, "host": self.name, "calls": request["calls"], "padding": "x" * self.padding, "user": user}


class Lab:
    def __init__(self, tmp_path, count=3, https=False, padding=0, base_latency=0.0):
        certificates = create_listener_certificates() if https else None
        self.ca_path = os.path.join(tmp_path, "winrm-ca.pem")
        authenticator = Authenticator(USER, PASSWORD, str(tmp_path), certificates and certificates.channel_binding_hash())
        host = psh.PowerShellHost(runner_text=RUNNER_TEXT)
        self.endpoints = [
            wsman.ServerEndpoint(FakeExchangeServer("EX%02d" % number, padding), host, base_latency=base_latency)
            for number in range(1, count + 1)
        ]
        context = certificates.server_context(str(tmp_path)) if certificates else None
        self.service = wsman.WsmanService(self.endpoints, authenticator, tls_context=context)
        self.service.start()

    def session(self, index=0, transport="basic", password=PASSWORD, **options) -> winrm.Session:
        url = "%s://127.0.0.1:%d/wsman" % (self.service.scheme, self.endpoints[index].port)
        if self.service.scheme == "https":
            options.update(server_cert_validation="validate", ca_trust_path=self.ca_path)
        return winrm.Session(url, auth=(USER, password), transport=transport, **options)

    def counters(self, index=0) -> dict:
        return self.endpoints[index].status()


@pytest.fixture
def lab(tmp_path):
    labs = []

    def start(**options):
        labs.append(Lab(tmp_path, **options))
        return labs[-1]

    yield start
    for started in labs:
        started.service.stop()


def run_runner(session: winrm.Session, request: dict | None = None):
    """What the collection does: the encoded bootstrap, the script on stdin; returns the response."""
    protocol = session.protocol
    shell = protocol.open_shell(codepage=65001)
    try:
        command = RUNNER.encoded_bootstrap().split(" ")
        command_id = protocol.run_command(shell, command[0], command[1:], console_mode_stdin=False)
        script = RUNNER.compose_script(request or {"version": 1, "calls": []}, RUNNER_TEXT)
        protocol.send_command_input(shell, command_id, script.encode("ascii"), end=True)
        stdout, stderr, exit_code = protocol.get_command_output(shell, command_id)
        protocol.cleanup_command(shell, command_id)
    finally:
        protocol.close_shell(shell)
    assert (stderr, exit_code) == (b"", 0)
    return RUNNER.decode_json(RUNNER.find_result(stdout.decode("ascii")))


@pytest.mark.parametrize("https", [False, True])
@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_runner_exit0_and_unknown_commands(lab, transport, https):
    started = lab(https=https)
    session = started.session(transport=transport)
    assert run_runner(session)["host"] == "EX01"
    assert session.run_ps("exit 0").status_code == 0
    unknown = session.run_ps("Get-Date")
    assert unknown.status_code == 1
    assert "The term 'Get-Date' is not recognized as the name of a cmdlet" in unknown.std_err.decode()
    # NTLM over plain HTTP encrypts every message, as Windows requires.
    encrypted = transport == "ntlm" and not https
    assert (session.protocol.transport.encryption is not None) == encrypted
    counters = started.counters()
    assert counters["commands"] == {"runner": 1, "raw-exit0": 1, "other": 1}
    assert counters["requests"] == {"Create": 3, "Command": 3, "Send": 1, "Receive": 3, "Signal": 3, "Delete": 3}
    assert counters["encrypted_messages"] == (16 if encrypted else 0)  # every request above
    assert counters["open_shells"] == 0 and counters["auth_failures"] == 0


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_wrong_password_is_rejected_with_401(lab, transport):
    started = lab()
    with pytest.raises(InvalidCredentialsError):
        started.session(transport=transport, password="wrong").run_ps("exit 0")
    assert started.counters()["auth_failures"] == 1


def test_ntlm_channel_binding_must_match_the_listener_certificate(lab, tmp_path):
    started = lab(https=True)
    started.service._authenticator._channel_binding_hash = b"\x00" * 32  # a man in the middle's certificate
    with pytest.raises(InvalidCredentialsError):
        started.session(transport="ntlm").run_ps("exit 0")


def test_large_output_comes_in_several_receives(lab):
    started = lab(padding=400_000)
    response = run_runner(started.session(transport="ntlm"))
    assert len(response["padding"]) == 400_000
    # ~530 kB of result line, at most ~109 kB of output per Receive of a 153600-byte envelope.
    assert started.counters()["requests"]["Receive"] == 5


def test_unknown_shell_is_a_fault(lab):
    protocol = lab().session().protocol
    with pytest.raises(WSManFaultError) as raised:
        protocol.run_command("00000000-0000-0000-0000-000000000000", "PowerShell")
    assert raised.value.wsman_fault_code == wsman.ERROR_WSMAN_INVALID_SELECTORS


def test_latency_beyond_the_operation_timeout_is_answered_with_timed_out_and_retried(lab):
    started = lab(base_latency=1.4)
    session = started.session(operation_timeout_sec=1, read_timeout_sec=3)
    begin = time.monotonic()
    assert session.run_ps("exit 0").status_code == 0
    assert 1.4 <= time.monotonic() - begin < 3
    assert started.counters()["requests"]["Receive"] == 2


def test_fault_latency(lab):
    started = lab()
    started.endpoints[0].faults.add("latency", seconds=0.5, times=1)
    begin = time.monotonic()
    started.session().run_ps("exit 0")
    assert time.monotonic() - begin >= 0.5
    begin = time.monotonic()
    started.session().run_ps("exit 0")
    assert time.monotonic() - begin < 0.5


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_fault_http401_rejects_the_next_login(lab, transport):
    started = lab()
    started.endpoints[0].faults.add("http401", times=1)
    with pytest.raises(InvalidCredentialsError):
        started.session(transport=transport).run_ps("exit 0")
    assert started.session(transport=transport).run_ps("exit 0").status_code == 0


def test_fault_http500(lab):
    started = lab()
    started.endpoints[0].faults.add("http500", after=1)
    assert started.session().run_ps("exit 0").status_code == 0  # the first command is skipped
    with pytest.raises(WinRMTransportError) as raised:
        started.session().run_ps("exit 0")
    assert raised.value.code == 500


def test_fault_timeout_a_few_times_is_retried_by_the_client(lab):
    started = lab()
    started.endpoints[0].faults.add("timeout", seconds=0.05, times=3)
    assert started.session().run_ps("exit 0").status_code == 0
    assert started.counters()["requests"]["Receive"] == 4
    assert started.counters()["faults"] == []  # used up


def test_fault_timeout_waits_the_operation_timeout_by_default(lab):
    started = lab()
    started.endpoints[0].faults.add("timeout", times=1)
    begin = time.monotonic()
    assert started.session(operation_timeout_sec=1, read_timeout_sec=3).run_ps("exit 0").status_code == 0
    assert time.monotonic() - begin >= 1


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_fault_drop(lab, transport):
    started = lab()
    started.endpoints[0].faults.add("drop", times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        started.session(transport=transport).run_ps("exit 0")


@pytest.mark.parametrize("kind", ["truncate", "garble"])
def test_fault_damaged_result_line(lab, kind):
    started = lab()
    started.endpoints[0].faults.add(kind, times=1)
    started.session().run_ps("exit 0")  # only runner commands count for these faults
    with pytest.raises(ValueError, match="not base64 of UTF-8 JSON"):
        run_runner(started.session())
    assert run_runner(started.session())["host"] == "EX01"


def test_fifty_concurrent_clients(lab):
    started = lab(count=10)

    def client(number):
        session = started.session(number % 10, transport="ntlm" if number % 2 else "basic")
        return run_runner(session, {"version": 1, "calls": [{"id": str(number)}]})["calls"][0]["id"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        assert sorted(pool.map(client, range(50)), key=int) == [str(number) for number in range(50)]
    assert sum(started.counters(index)["commands"]["runner"] for index in range(10)) == 50


def test_five_hundred_servers_share_one_acceptor_thread(lab):
    threads_before = threading.active_count()
    begin = time.monotonic()
    started = lab(count=500)
    assert time.monotonic() - begin < 5
    assert threading.active_count() == threads_before + 1
    assert len({endpoint.port for endpoint in started.endpoints}) == 500
    assert started.session(499).run_ps("exit 0").status_code == 0


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_the_winrm_account_reaches_the_runner(lab, transport):
    """Get-HybridmailHost's UserName is the account of the connection: the shell's owner."""
    assert run_runner(lab().session(transport=transport))["user"] == USER

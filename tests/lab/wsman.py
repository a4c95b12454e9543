"""The lab's WS-Management endpoint: WinRS over HTTP(S), one listening port per simulated server.

Speaks what pywinrm 0.5 (`winrm.protocol.Protocol`) and ansible-core's winrm connection plugin send:
Create shell, Command, Send (stdin), Receive (stdout/stderr), Signal, Delete shell, with answers and
SOAP faults shaped like Windows' ([MS-WSMV]). Authentication and NTLM message encryption live in
auth.py, the command itself is run by psh.py, transport faults come from control.py.

All listening sockets share one acceptor thread (a selector); each accepted TCP connection gets a
daemon thread, because NTLM authenticates the connection and clients keep it alive for a whole
task. 500 servers therefore cost 500 idle sockets and one thread, not 500 threads.
"""

from __future__ import annotations

import base64
import binascii
import re
import selectors
import socket
import ssl
import sys
import threading
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from xml.sax.saxutils import escape, quoteattr

from tests.lab import psh
from tests.lab.auth import ENCRYPTED_CONTENT_TYPE, Authenticator, EncryptionError
from tests.lab.control import TransportFaults

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
SHELL_RESOURCE_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
ACTIONS = {
    _TRANSFER + "Create": "Create",
    _TRANSFER + "Delete": "Delete",
    _SHELL + "Command": "Command",
    _SHELL + "Send": "Send",
    _SHELL + "Receive": "Receive",
    _SHELL + "Signal": "Signal",
}
OPERATIONS = tuple(ACTIONS.values())
RESPONSE_ACTIONS = {operation: action + "Response" for action, operation in ACTIONS.items()}
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
COMMAND_STATE_DONE = _SHELL + "CommandState/Done"
COMMAND_STATE_RUNNING = _SHELL + "CommandState/Running"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

# WSManFault codes clients act on: pywinrm turns 2150858793 into WinRMOperationTimeoutError and
# retries the Receive; ansible-core recognises a vanished shell by 2150858843.
ERROR_WSMAN_OPERATION_TIMEDOUT = 2150858793
ERROR_WSMAN_INVALID_SELECTORS = 2150858843
TIMED_OUT_MESSAGE = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  "

DEFAULT_OPERATION_TIMEOUT = 60.0  # Windows' MaxTimeoutms default when the client names none
DEFAULT_MAX_ENVELOPE = 153600
SHELL_IDLE_TIMEOUT = 7200.0  # Windows' default IdleTimeOut (PT7200.000S)
CONNECTION_IDLE_TIMEOUT = 120.0
TLS_HANDSHAKE_TIMEOUT = 10.0
# Output travels in Stream elements of at most this many bytes, and one Receive answer carries no
# more than fits MaxEnvelopeSize after base64; the rest waits for the next Receive (State Running).
STREAM_PIECE = 4096
_ENVELOPE_OVERHEAD = 8192
_DURATION_RE = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


class WsmanFault(Exception):
    """A SOAP fault, rendered as Windows renders it (HTTP 500)."""

    def __init__(self, subcode: str, reason: str, *, code: str = "s:Sender", wsman_code: int | None = None):
        super().__init__(reason)
        self.subcode = subcode
        self.reason = reason
        self.code = code
        self.wsman_code = wsman_code

    def to_xml(self, relates_to: str | None, machine: str) -> bytes:
        detail = ""
        if self.wsman_code is not None:
            detail = (
                '<s:Detail><f:WSManFault xmlns:f="%s" Code="%d" Machine=%s><f:Message>%s</f:Message>'
                "</f:WSManFault></s:Detail>" % (NS["f"], self.wsman_code, quoteattr(machine), escape(self.reason))
            )
        body = (
            "<s:Fault><s:Code><s:Value>%s</s:Value><s:Subcode><s:Value>%s</s:Value></s:Subcode></s:Code>"
            '<s:Reason><s:Text xml:lang="en-US">%s</s:Text></s:Reason>%s</s:Fault>'
            % (self.code, self.subcode, escape(self.reason), detail)
        )
        return envelope(FAULT_ACTION, relates_to, body)


def timed_out_fault() -> WsmanFault:
    return WsmanFault("w:TimedOut", TIMED_OUT_MESSAGE, code="s:Receiver", wsman_code=ERROR_WSMAN_OPERATION_TIMEDOUT)


def shell_not_found_fault(shell_id: str | None) -> WsmanFault:
    return WsmanFault(
        "w:InvalidSelectors",
        "The request for the Windows Remote Shell with ShellId %s failed because the shell was not found on the "
        "server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on the "
        "server. Provide the correct ShellId or create a new shell and retry the operation. " % (shell_id or ""),
        wsman_code=ERROR_WSMAN_INVALID_SELECTORS,
    )


def envelope(action: str, relates_to: str | None, body: str) -> bytes:
    relates = "<a:RelatesTo>%s</a:RelatesTo>" % escape(relates_to) if relates_to else ""
    return (
        '<s:Envelope xml:lang="en-US" xmlns:s="{s}" xmlns:a="{a}" xmlns:x="{x}" xmlns:w="{w}" xmlns:rsp="{rsp}" '
        'xmlns:p="{p}"><s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{message_id}</a:MessageID>'
        "<a:To>{to}</a:To>{relates}</s:Header><s:Body>{body}</s:Body></s:Envelope>".format(
            action=action, message_id=str(uuid.uuid4()).upper(), to=ANONYMOUS, relates=relates, body=body, **NS
        )
    ).encode("utf-8")


def parse_duration(text: str | None, default: float) -> float:
    """Seconds of an xs:duration such as PT20S or PT60.000S (WS-Man OperationTimeout)."""
    match = _DURATION_RE.match((text or "").strip())
    if not match or not any(match.groups()):
        return default
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


@dataclass
class WsmanRequest:
    """The parts of a WS-Man request the shell operations use."""

    action: str
    message_id: str | None
    operation: str | None = None  # None: an action the lab does not support
    resource_uri: str | None = None
    shell_id: str | None = None
    operation_timeout: float = DEFAULT_OPERATION_TIMEOUT
    max_envelope: int = DEFAULT_MAX_ENVELOPE
    options: dict[str, str] = field(default_factory=dict)
    command_line: str | None = None  # Command: rsp:Command and rsp:Arguments joined by spaces
    command_id: str | None = None  # Send, Receive, Signal
    stdin: bytes = b""  # Send
    stdin_end: bool = False  # Send
    signal_code: str | None = None  # Signal


def _text(element: ET.Element | None) -> str | None:
    return None if element is None else (element.text or "")


def parse_request(data: bytes) -> WsmanRequest:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise WsmanFault("w:SchemaValidationError", "The SOAP XML in the message is not well formed: %s" % exc) from None
    header = root.find("s:Header", NS)
    body = root.find("s:Body", NS)
    if root.tag != "{%s}Envelope" % NS["s"] or header is None:
        raise WsmanFault("w:SchemaValidationError", "The message is not a SOAP 1.2 envelope with a header.")
    action = (_text(header.find("a:Action", NS)) or "").strip()
    request = WsmanRequest(
        action=action,
        message_id=_text(header.find("a:MessageID", NS)),
        operation=ACTIONS.get(action),
        resource_uri=_text(header.find("w:ResourceURI", NS)),
        operation_timeout=parse_duration(_text(header.find("w:OperationTimeout", NS)), DEFAULT_OPERATION_TIMEOUT),
    )
    max_envelope = _text(header.find("w:MaxEnvelopeSize", NS))
    if max_envelope and max_envelope.strip().isdigit():
        request.max_envelope = int(max_envelope)
    for selector in header.findall("w:SelectorSet/w:Selector", NS):
        if selector.get("Name") == "ShellId":
            request.shell_id = (selector.text or "").strip()
    for option in header.findall("w:OptionSet/w:Option", NS):
        request.options[option.get("Name", "")] = option.text or ""
    if body is None:
        return request

    if request.operation == "Command":
        command_line = body.find("rsp:CommandLine", NS)
        if command_line is None:
            raise WsmanFault("w:SchemaValidationError", "The Command request has no rsp:CommandLine.")
        parts = [_text(command_line.find("rsp:Command", NS)) or ""]
        parts += [argument.text or "" for argument in command_line.findall("rsp:Arguments", NS)]
        request.command_line = " ".join(part.strip() for part in parts if part.strip())
    elif request.operation == "Send":
        for stream in body.findall("rsp:Send/rsp:Stream", NS):
            request.command_id = stream.get("CommandId")
            try:
                request.stdin += base64.b64decode((stream.text or "").strip(), validate=True)
            except binascii.Error:
                raise WsmanFault("w:SchemaValidationError", "The stdin stream is not valid base64.") from None
            request.stdin_end = request.stdin_end or stream.get("End", "false").lower() == "true"
    elif request.operation == "Receive":
        desired = body.find("rsp:Receive/rsp:DesiredStream", NS)
        request.command_id = desired.get("CommandId") if desired is not None else None
    elif request.operation == "Signal":
        signal = body.find("rsp:Signal", NS)
        if signal is not None:
            request.command_id = signal.get("CommandId")
            request.signal_code = (_text(signal.find("rsp:Code", NS)) or "").strip()
    return request


def create_response(request: WsmanRequest, shell_id: str, address: str, owner: str, client_ip: str) -> bytes:
    body = (
        "<x:ResourceCreated><a:Address>{address}</a:Address><a:ReferenceParameters>"
        "<w:ResourceURI>{uri}</w:ResourceURI><w:SelectorSet><w:Selector Name=\"ShellId\">{shell}</w:Selector>"
        "</w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>"
        "<rsp:Shell><rsp:ShellId>{shell}</rsp:ShellId><rsp:ResourceUri>{uri}</rsp:ResourceUri>"
        "<rsp:Owner>{owner}</rsp:Owner><rsp:ClientIP>{client_ip}</rsp:ClientIP>"
        "<rsp:IdleTimeOut>PT{idle:.3f}S</rsp:IdleTimeOut><rsp:InputStreams>stdin</rsp:InputStreams>"
        "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams><rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime>"
        "<rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity></rsp:Shell>"
    ).format(
        address=escape(address),
        uri=SHELL_RESOURCE_URI,
        shell=shell_id,
        owner=escape(owner),
        client_ip=escape(client_ip),
        idle=SHELL_IDLE_TIMEOUT,
    )
    return envelope(RESPONSE_ACTIONS["Create"], request.message_id, body)


def command_response(request: WsmanRequest, command_id: str) -> bytes:
    body = "<rsp:CommandResponse><rsp:CommandId>%s</rsp:CommandId></rsp:CommandResponse>" % command_id
    return envelope(RESPONSE_ACTIONS["Command"], request.message_id, body)


def receive_response(
    request: WsmanRequest, command_id: str, pieces: list[tuple[str, bytes]], exit_code: int | None
) -> bytes:
    """A ReceiveResponse with output pieces; exit_code None means the command is still running."""
    command = quoteattr(command_id)
    streams = "".join(
        '<rsp:Stream Name="%s" CommandId=%s>%s</rsp:Stream>' % (name, command, base64.b64encode(data).decode("ascii"))
        for name, data in pieces
    )
    if exit_code is None:
        state = '<rsp:CommandState CommandId=%s State="%s"></rsp:CommandState>' % (command, COMMAND_STATE_RUNNING)
    else:
        streams += "".join(
            '<rsp:Stream Name="%s" CommandId=%s End="true"></rsp:Stream>' % (name, command) for name in ("stdout", "stderr")
        )
        state = '<rsp:CommandState CommandId=%s State="%s"><rsp:ExitCode>%d</rsp:ExitCode></rsp:CommandState>' % (
            command,
            COMMAND_STATE_DONE,
            exit_code,
        )
    body = "<rsp:ReceiveResponse>%s%s</rsp:ReceiveResponse>" % (streams, state)
    return envelope(RESPONSE_ACTIONS["Receive"], request.message_id, body)


def empty_response(request: WsmanRequest, body: str = "") -> bytes:
    return envelope(RESPONSE_ACTIONS[request.operation], request.message_id, body)


@dataclass
class Reply:
    """What the connection sends back: a status and body, or nothing at all (a dropped connection)."""

    status: int = 200
    body: bytes = b""
    drop: bool = False
    close: bool = False


@dataclass
class _Command:
    command_id: str
    command_line: str
    ready_at: float  # time.monotonic() when its output may be returned (latency)
    owner: str = ""  # the account the shell was created with
    stdin: bytearray = field(default_factory=bytearray)
    outcome: psh.Outcome | None = None
    pending: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Shell:
    shell_id: str
    last_used: float
    owner: str = ""
    commands: dict[str, _Command] = field(default_factory=dict)


def _cut_result_line(stdout: bytes) -> bytes:
    """stdout with the result line cut in the middle, as if the process died while printing it."""
    start = stdout.find(psh.runner_contract().RESULT_PREFIX.encode("ascii"))
    end = stdout.find(b"\r\n", start)
    return stdout[: start + (end - start) // 2]


def _garble_result_line(stdout: bytes) -> bytes:
    """stdout with characters that are not base64 in the middle of the result line's payload."""
    prefix = psh.runner_contract().RESULT_PREFIX.encode("ascii")
    start = stdout.find(prefix) + len(prefix)
    end = stdout.find(b"\r\n", start)
    middle = start + (end - start) // 2
    return stdout[:middle] + b"?%!*" + stdout[middle + 4 :]


class ServerEndpoint:
    """The WinRM service of one simulated server: its shells, counters and transport faults."""

    def __init__(self, server, powershell: psh.PowerShellHost, *, base_latency: float = 0.0):
        self.server = server
        self.port: int | None = None
        self.faults = TransportFaults()
        self._powershell = powershell
        self._base_latency = base_latency
        self._stopping = threading.Event()  # replaced by the service's own in bind()
        self._lock = threading.Lock()
        self._shells: dict[str, _Shell] = {}
        self.reset_counters()

    def bind(self, port: int, stopping: threading.Event) -> None:
        """Called by the service that listens for this endpoint; stopping ends waiting Receives."""
        self.port = port
        self._stopping = stopping

    # -- bookkeeping -------------------------------------------------------------------------------

    def reset_counters(self) -> None:
        with self._lock:
            self._requests = dict.fromkeys(OPERATIONS, 0)
            self._commands = dict.fromkeys((psh.KIND_RUNNER, psh.KIND_EXIT0, psh.KIND_OTHER), 0)
            # Runner commands by how the script arrived (psh.Outcome.delivery): {"stdin:2": 1, ...}.
            self._deliveries: dict[str, int] = {}
            # auth_failures: wrong credentials; encrypted_messages: requests sealed with NTLM keys.
            self._events = {"auth_failures": 0, "encrypted_messages": 0}

    def count(self, event: str) -> None:
        with self._lock:
            self._events[event] += 1

    def status(self) -> dict:
        with self._lock:
            return {
                "port": self.port,
                "requests": dict(self._requests),
                "commands": dict(self._commands),
                "runner_deliveries": dict(self._deliveries),
                **self._events,
                "open_shells": len(self._shells),
                "faults": self.faults.snapshot(),
            }

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _shell(self, request: WsmanRequest) -> _Shell:
        with self._lock:
            shell = self._shells.get(request.shell_id or "")
            if shell is None:
                raise shell_not_found_fault(request.shell_id)
            shell.last_used = time.monotonic()
            return shell

    def _command(self, request: WsmanRequest) -> _Command:
        shell = self._shell(request)
        with self._lock:
            command = shell.commands.get((request.command_id or "").upper())
        if command is None:
            raise WsmanFault(
                "w:InvalidParameter",
                "The Windows Remote Shell with ShellId %s has no command with CommandId %s."
                % (shell.shell_id, request.command_id),
            )
        return command

    # -- operations --------------------------------------------------------------------------------

    def handle(self, request: WsmanRequest, *, address: str, owner: str, client_ip: str) -> Reply:
        if request.operation is None:
            fault = WsmanFault("a:ActionNotSupported", "The action %s is not supported by the service." % request.action)
            return Reply(500, fault.to_xml(request.message_id, self.server.fqdn))
        if request.resource_uri != SHELL_RESOURCE_URI:
            fault = WsmanFault(
                "w:DestinationUnreachable",
                "The WS-Management service cannot process the request. The resource URI %s is not supported by this "
                "lab, which only emulates the cmd shell." % request.resource_uri,
            )
            return Reply(500, fault.to_xml(request.message_id, self.server.fqdn))
        with self._lock:
            self._requests[request.operation] += 1
        try:
            if request.operation == "Create":
                return self._create(request, address, owner, client_ip)
            if request.operation == "Command":
                return self._run_command(request)
            if request.operation == "Send":
                return self._send(request)
            if request.operation == "Receive":
                return self._receive(request)
            if request.operation == "Signal":
                return self._signal(request)
            return self._delete(request)
        except WsmanFault as fault:
            return Reply(500, fault.to_xml(request.message_id, self.server.fqdn))

    def _create(self, request: WsmanRequest, address: str, owner: str, client_ip: str) -> Reply:
        if any(fault.kind == "http401" for fault in self.faults.take("Create")):
            return Reply(401, close=True)
        shell_id = str(uuid.uuid4()).upper()
        now = time.monotonic()
        with self._lock:
            # Windows forgets shells idle longer than IdleTimeOut; so does the lab (clients that died).
            for stale in [key for key, shell in self._shells.items() if now - shell.last_used > SHELL_IDLE_TIMEOUT]:
                del self._shells[stale]
            self._shells[shell_id] = _Shell(shell_id, now, owner)
        return Reply(200, create_response(request, shell_id, address, owner, client_ip))

    def _run_command(self, request: WsmanRequest) -> Reply:
        shell = self._shell(request)
        faults = self.faults.take("Command")
        kinds = {fault.kind for fault in faults}
        if "drop" in kinds:
            return Reply(drop=True)
        if "http500" in kinds:
            return Reply(500)
        latency = self._base_latency + sum(fault.seconds for fault in faults if fault.kind == "latency")
        command = _Command(str(uuid.uuid4()).upper(), request.command_line or "", time.monotonic() + latency,
                           owner=shell.owner)
        with self._lock:
            shell.commands[command.command_id] = command
        return Reply(200, command_response(request, command.command_id))

    def _send(self, request: WsmanRequest) -> Reply:
        command = self._command(request)
        with command.lock:
            command.stdin += request.stdin
        return Reply(200, empty_response(request, "<rsp:SendResponse/>"))

    def _execute(self, command: _Command) -> None:
        """Run the command once, on its first Receive (all clients send stdin before receiving)."""
        with command.lock:
            if command.outcome is not None:
                return
            outcome = self._powershell.run(command.command_line, bytes(command.stdin), self.server, user=command.owner)
            stdout = outcome.stdout
            if outcome.kind == psh.KIND_RUNNER:
                for fault in self.faults.take("runner"):
                    stdout = _cut_result_line(stdout) if fault.kind == "truncate" else _garble_result_line(stdout)
            command.outcome = outcome
            command.pending = [(name, data) for name, data in (("stdout", stdout), ("stderr", outcome.stderr)) if data]
        with self._lock:
            self._commands[outcome.kind] += 1
            if outcome.delivery is not None:
                self._deliveries[outcome.delivery] = self._deliveries.get(outcome.delivery, 0) + 1

    def _receive(self, request: WsmanRequest) -> Reply:
        command = self._command(request)
        timeouts = self.faults.take("Receive")
        if timeouts:
            delays = [fault.seconds for fault in timeouts if fault.seconds is not None]
            self._sleep(max(delays) if delays else request.operation_timeout)
            raise timed_out_fault()
        self._execute(command)
        # A command still "running" (latency) holds the Receive up to OperationTimeout, as Windows does.
        remaining = command.ready_at - time.monotonic()
        if remaining > request.operation_timeout:
            self._sleep(request.operation_timeout)
            raise timed_out_fault()
        self._sleep(remaining)
        budget = max(STREAM_PIECE, (request.max_envelope - _ENVELOPE_OVERHEAD) * 3 // 4)
        pieces = []
        with command.lock:
            while command.pending and budget > 0:
                name, data = command.pending[0]
                size = min(STREAM_PIECE, budget, len(data))
                pieces.append((name, data[:size]))
                budget -= size
                if size == len(data):
                    command.pending.pop(0)
                else:
                    command.pending[0] = (name, data[size:])
            exit_code = None if command.pending else command.outcome.exit_code
        return Reply(200, receive_response(request, command.command_id, pieces, exit_code))

    def _signal(self, request: WsmanRequest) -> Reply:
        shell = self._shell(request)
        # terminate and ctrl_c both end the emulated process; its state goes with it.
        with self._lock:
            shell.commands.pop((request.command_id or "").upper(), None)
        return Reply(200, empty_response(request, "<rsp:SignalResponse/>"))

    def _delete(self, request: WsmanRequest) -> Reply:
        with self._lock:
            if self._shells.pop(request.shell_id or "", None) is None:
                raise shell_not_found_fault(request.shell_id)
        return Reply(200, empty_response(request))


class _ConnectionContext:
    """What a connection's handler needs (passed where socketserver passes the server)."""

    def __init__(self, endpoint: ServerEndpoint, authenticator: Authenticator, scheme: str):
        self.endpoint = endpoint
        self.authenticator = authenticator
        self.scheme = scheme


class _WsmanHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: NTLM authenticates the connection
    timeout = CONNECTION_IDLE_TIMEOUT
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return "Microsoft-HTTPAPI/2.0"

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        """Quiet: hundreds of servers would flood the terminal; counters are in the status."""

    def setup(self):
        super().setup()
        self.auth = self.server.authenticator.connection()

    def _send(self, reply: Reply, headers: list[tuple[str, str]] = (), encrypted: bool = False) -> None:
        body = reply.body
        content_type = "application/soap+xml;charset=UTF-8"
        if encrypted and body:
            body = self.auth.encrypt(body)
            content_type = ENCRYPTED_CONTENT_TYPE
        self.send_response(reply.status)
        for name, value in headers:
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if reply.close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._send(Reply(411, close=True))
            return
        data = self.rfile.read(int(length))
        if self.path.split("?")[0].lower() != "/wsman":
            self._send(Reply(404))
            return
        endpoint = self.server.endpoint
        decision = self.auth.check(self.headers.get("Authorization"))
        if not decision.accepted:
            if decision.failed:
                endpoint.count("auth_failures")
            self._send(Reply(401), [("WWW-Authenticate", challenge) for challenge in decision.challenges])
            return
        encrypted = (self.headers.get("Content-Type") or "").lower().startswith("multipart/encrypted")
        if encrypted:
            try:
                data = self.auth.decrypt(data)
            except EncryptionError:
                self._send(Reply(400, close=True))
                return
            endpoint.count("encrypted_messages")
        if not data:
            # pywinrm authenticates with an empty POST before it encrypts the first message.
            self._send(Reply(200))
            return
        try:
            request = parse_request(data)
            reply = endpoint.handle(
                request,
                address="%s://%s%s" % (self.server.scheme, self.headers.get("Host", ""), self.path),
                owner=self.server.authenticator.username,
                client_ip=self.client_address[0],
            )
        except WsmanFault as fault:
            reply = Reply(500, fault.to_xml(None, endpoint.server.fqdn))
        except Exception as exc:  # a lab bug: answer like a crashed provider and say what happened
            traceback.print_exc(file=sys.stderr)
            fault = WsmanFault("w:InternalError", "hybridmail lab internal error: %r" % exc, code="s:Receiver")
            reply = Reply(500, fault.to_xml(None, endpoint.server.fqdn))
        if reply.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.status == 401:
            self.auth.forget()
        self._send(reply, encrypted=encrypted)


class WsmanService:
    """Listeners for many endpoints on one host, served by one acceptor thread."""

    def __init__(
        self,
        endpoints: list[ServerEndpoint],
        authenticator: Authenticator,
        *,
        host: str = "127.0.0.1",
        tls_context: ssl.SSLContext | None = None,
    ):
        self.endpoints = endpoints
        self.host = host
        self._authenticator = authenticator
        self._tls_context = tls_context
        self._scheme = "https" if tls_context else "http"
        self._stopping = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._wakeup_read, self._wakeup_write = socket.socketpair()
        self._listeners: list[socket.socket] = []
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept_loop, name="wsman-acceptor", daemon=True)

    @property
    def scheme(self) -> str:
        return self._scheme

    def start(self, first_port: int = 0) -> None:
        """Bind one port per endpoint: consecutive from first_port, or ephemeral ports when it is 0."""
        for index, endpoint in enumerate(self.endpoints):
            listener = socket.create_server((self.host, first_port + index if first_port else 0), backlog=128)
            listener.setblocking(False)
            endpoint.bind(listener.getsockname()[1], self._stopping)
            self._listeners.append(listener)
            context = _ConnectionContext(endpoint, self._authenticator, self._scheme)
            self._selector.register(listener, selectors.EVENT_READ, context)
        self._selector.register(self._wakeup_read, selectors.EVENT_READ, None)
        self._acceptor.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup_write.send(b"x")
        self._acceptor.join(timeout=5)
        for listener in self._listeners:
            listener.close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            for key, _events in self._selector.select():
                if key.data is None:
                    return  # woken up by stop()
                try:
                    connection, address = key.fileobj.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                connection.setblocking(True)
                threading.Thread(
                    target=self._serve_connection,
                    args=(connection, address, key.data),
                    name="wsman-%d" % key.data.endpoint.port,
                    daemon=True,
                ).start()

    def _serve_connection(self, raw: socket.socket, address, context: _ConnectionContext) -> None:
        with self._connections_lock:
            self._connections.add(raw)
        connection = raw
        try:
            if self._tls_context is not None:
                raw.settimeout(TLS_HANDSHAKE_TIMEOUT)
                connection = self._tls_context.wrap_socket(raw, server_side=True)
            _WsmanHandler(connection, address, context)
        except (OSError, ssl.SSLError):
            pass  # the client went away or failed the TLS handshake; nothing to answer
        finally:
            with self._connections_lock:
                self._connections.discard(raw)
            connection.close()

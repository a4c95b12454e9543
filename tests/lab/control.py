"""The lab's control interface: transport-level faults and a small JSON HTTP API.

Transport faults act on the WinRM exchange of one simulated server. Each counts the events of its
trigger operation; `after` skips the first N of them, then the fault applies to the next `times`
events (to every later one when `times` is omitted) and disappears.

| kind     | trigger                 | effect                                                              |
|----------|-------------------------|---------------------------------------------------------------------|
| latency  | Command                 | the command's output is ready `seconds` later (Receive waits up to  |
|          |                         | the client's OperationTimeout, then answers w:TimedOut, as Windows) |
| http401  | Create (a login)        | HTTP 401 with no new challenge: credentials rejected                |
| http500  | Command                 | HTTP 500 with an empty body                                         |
| timeout  | Receive                 | waits `seconds` (default: the request's OperationTimeout), then the |
|          |                         | w:TimedOut fault 2150858793 that clients retry                      |
| drop     | Command                 | the connection is closed without a response                         |
| truncate | runner command          | the result line is cut in the middle                                |
| garble   | runner command          | the base64 of the result line is corrupted                          |
| cmdlet   | (the Exchange emulation)| passed to ExchangeServer.inject_cmdlet_fault                        |

API (127.0.0.1 only): GET /status; POST /fault {server, kind, seconds?, times?, after?, cmdlet?,
message?}; POST /clear {server?}; POST /reset-counters.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRIGGERS = {
    "latency": "Command",
    "http401": "Create",
    "http500": "Command",
    "timeout": "Receive",
    "drop": "Command",
    "truncate": "runner",
    "garble": "runner",
}
FAULT_KINDS = tuple(TRIGGERS) + ("cmdlet",)


@dataclass
class TransportFault:
    kind: str
    seconds: float | None = None
    times: int | None = None
    after: int = 0
    seen: int = 0
    applied: int = 0

    @property
    def trigger(self) -> str:
        return TRIGGERS[self.kind]

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.applied >= self.times

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "trigger": self.trigger,
            "seconds": self.seconds,
            "times": self.times,
            "after": self.after,
            "seen": self.seen,
            "applied": self.applied,
        }


class TransportFaults:
    """The active transport faults of one server; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults: list[TransportFault] = []

    def add(self, kind: str, seconds: float | None = None, times: int | None = None, after: int = 0) -> TransportFault:
        if kind not in TRIGGERS:
            raise ValueError("unknown transport fault kind %r (one of %s)" % (kind, ", ".join(TRIGGERS)))
        if kind == "latency" and seconds is None:
            raise ValueError("a latency fault needs seconds")
        if (seconds is not None and seconds < 0) or (times is not None and times < 1) or after < 0:
            raise ValueError("seconds and after must not be negative, times must be at least 1")
        fault = TransportFault(kind, seconds=seconds, times=times, after=after)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, trigger: str) -> list[TransportFault]:
        """Count one event of trigger; returns copies of the faults that apply to it."""
        applying = []
        with self._lock:
            for fault in self._faults:
                if fault.trigger != trigger:
                    continue
                fault.seen += 1
                if fault.seen > fault.after:
                    fault.applied += 1
                    applying.append(TransportFault(**vars(fault)))
            self._faults = [fault for fault in self._faults if not fault.exhausted]
        return applying

    def clear(self) -> None:
        with self._lock:
            self._faults = []

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [fault.to_json() for fault in self._faults]


class ControlError(Exception):
    """A control request that cannot be carried out (answered with HTTP 400)."""


def _optional_number(body: dict, name: str, kind):
    value = body.get(name)
    if value is None:
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ControlError("%s must be a number" % name) from None


class LabControl:
    """What the control API can do to a running lab (also used in-process by tests)."""

    def __init__(self, fleet, endpoints: dict):
        self.fleet = fleet
        self.endpoints = endpoints  # server name -> wsman.ServerEndpoint

    def _endpoint(self, name):
        if name not in self.endpoints:
            raise ControlError("unknown server %r" % (name,))
        return self.endpoints[name]

    def status(self) -> dict:
        """fleet.status() (per server) with each server's WinRM counters and faults under "winrm"."""
        servers = self.fleet.status()
        for name, endpoint in self.endpoints.items():
            servers[name]["winrm"] = endpoint.status()
        return {"fleet": self.fleet.name, "servers": servers}

    def fault(self, body: dict) -> dict:
        endpoint = self._endpoint(body.get("server"))
        kind = body.get("kind")
        times = _optional_number(body, "times", int)
        after = _optional_number(body, "after", int) or 0
        if kind == "cmdlet":
            if not body.get("cmdlet"):
                raise ControlError("a cmdlet fault needs cmdlet")
            # The Exchange emulation counts the cmdlet's calls itself; its times=0 means until cleared.
            endpoint.server.inject_cmdlet_fault(body["cmdlet"], body.get("message"), after=after, times=times or 0)
            return {"server": endpoint.server.name, "kind": kind, "cmdlet": body["cmdlet"]}
        try:
            fault = endpoint.faults.add(kind, seconds=_optional_number(body, "seconds", float), times=times, after=after)
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        return dict(fault.to_json(), server=endpoint.server.name)

    def clear(self, body: dict) -> dict:
        names = [body["server"]] if body.get("server") else list(self.endpoints)
        for name in names:
            endpoint = self._endpoint(name)
            endpoint.faults.clear()
            endpoint.server.clear_faults()
        return {"cleared": names}

    def reset_counters(self) -> dict:
        for endpoint in self.endpoints.values():
            endpoint.reset_counters()
        return {"reset": len(self.endpoints)}


class _ControlHandler(BaseHTTPRequestHandler):
    server_version = "hybridmail-lab-control"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        """Quiet: the control API is polled by tests."""

    def _reply(self, status: int, document) -> None:
        body = json.dumps(document, indent=1, sort_keys=True).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.rstrip("/") != "/status":
            self._reply(404, {"error": "unknown path %s" % self.path})
            return
        self._reply(200, self.server.control.status())

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ControlError("the body must be a JSON object")
            routes = {
                "/fault": self.server.control.fault,
                "/clear": self.server.control.clear,
                "/reset-counters": lambda _body: self.server.control.reset_counters(),
            }
            route = routes.get(self.path.rstrip("/"))
            if route is None:
                self._reply(404, {"error": "unknown path %s" % self.path})
                return
            self._reply(200, route(body))
        except (ControlError, json.JSONDecodeError) as exc:
            self._reply(400, {"error": str(exc)})


class ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, control: LabControl, host: str = "127.0.0.1", port: int = 0):
        self.control = control
        super().__init__((host, port), _ControlHandler)
        # A short poll interval keeps stop() (which waits for the loop to notice) quick.
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="lab-control", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return "http://%s:%d" % (host, port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

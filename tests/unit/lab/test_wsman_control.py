"""Transport fault bookkeeping and the control API (over HTTP, in-process)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.lab import psh, wsman
from tests.lab.control import ControlServer, LabControl, TransportFaults


class FakeExchangeServer:
    def __init__(self, name):
        self.name = name
        self.fqdn = name.lower() + ".contoso.com"
        self.cmdlet_faults = []

    def handle_request(self, request):
        return {"version": 1, "host": self.name, "calls": []}

    def inject_cmdlet_fault(self, cmdlet, message=None, after=0, times=1):
        self.cmdlet_faults.append((cmdlet, message, after, times))

    def clear_faults(self):
        self.cmdlet_faults = []

    def status(self):
        return {"fqdn": self.fqdn}


class FakeFleet:
    name = "fake"

    def __init__(self, names):
        self.servers = {name: FakeExchangeServer(name) for name in names}

    def status(self):
        return {name: server.status() for name, server in self.servers.items()}


@pytest.fixture
def control():
    fleet = FakeFleet(["EX01", "EX02"])
    host = psh.PowerShellHost(runner_text="")
    endpoints = {name: wsman.ServerEndpoint(server, host) for name, server in fleet.servers.items()}
    server = ControlServer(LabControl(fleet, endpoints))
    server.start()
    yield server
    server.stop()


def call(server, path, body=None):
    data = None if body is None else json.dumps(body).encode("utf-8")
    try:
        with urllib.request.urlopen(urllib.request.Request(server.url + path, data=data), timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_after_and_times_count_trigger_events():
    faults = TransportFaults()
    faults.add("http500", after=1, times=2)
    faults.add("timeout", seconds=0)
    assert [fault.kind for fault in faults.take("Command")] == []  # skipped (after=1)
    assert [fault.kind for fault in faults.take("Command")] == ["http500"]
    assert faults.snapshot()[0] | {"seen": 2, "applied": 1} == faults.snapshot()[0]
    assert [fault.kind for fault in faults.take("Command")] == ["http500"]
    assert [fault.kind for fault in faults.take("Command")] == []  # used up and gone
    assert [fault["kind"] for fault in faults.snapshot()] == ["timeout"]
    assert all(faults.take("Receive") for _event in range(10))  # no times: until cleared
    faults.clear()
    assert faults.take("Receive") == []


@pytest.mark.parametrize(
    "options",
    [{"kind": "bogus"}, {"kind": "latency"}, {"kind": "drop", "times": 0}, {"kind": "drop", "after": -1}],
)
def test_invalid_faults_are_refused(options):
    with pytest.raises(ValueError):
        TransportFaults().add(**options)


def test_status_merges_fleet_status_with_winrm_counters(control):
    status, document = call(control, "/status")
    assert status == 200
    assert document["fleet"] == "fake"
    server = document["servers"]["EX01"]
    assert server["fqdn"] == "ex01.contoso.com"
    assert server["winrm"]["requests"]["Command"] == 0 and server["winrm"]["commands"]["runner"] == 0


def test_fault_clear_and_reset(control):
    assert call(control, "/fault", {"server": "EX01", "kind": "timeout", "seconds": 0.1, "times": 2})[0] == 200
    assert call(control, "/fault", {"server": "EX02", "kind": "cmdlet", "cmdlet": "Get-Queue", "message": "boom"})[0] == 200
    document = call(control, "/status")[1]["servers"]
    assert document["EX01"]["winrm"]["faults"][0] | {"kind": "timeout", "times": 2, "seconds": 0.1} == document[
        "EX01"
    ]["winrm"]["faults"][0]
    endpoints = control.control.endpoints
    assert endpoints["EX02"].server.cmdlet_faults == [("Get-Queue", "boom", 0, 0)]  # 0: until cleared

    endpoints["EX01"].reset_counters()
    assert call(control, "/clear", {"server": "EX01"}) == (200, {"cleared": ["EX01"]})
    assert call(control, "/status")[1]["servers"]["EX01"]["winrm"]["faults"] == []
    assert endpoints["EX02"].server.cmdlet_faults != []
    assert call(control, "/clear", {})[1] == {"cleared": ["EX01", "EX02"]}
    assert endpoints["EX02"].server.cmdlet_faults == []
    assert call(control, "/reset-counters", {}) == (200, {"reset": 2})


@pytest.mark.parametrize(
    "path, body, message",
    [
        ("/fault", {"server": "EX09", "kind": "drop"}, "unknown server"),
        ("/fault", {"server": "EX01", "kind": "nope"}, "unknown transport fault kind"),
        ("/fault", {"server": "EX01", "kind": "cmdlet"}, "needs cmdlet"),
        ("/fault", {"server": "EX01", "kind": "drop", "times": "often"}, "times must be a number"),
        ("/fault", [], "must be a JSON object"),
        ("/nowhere", {}, "unknown path"),
    ],
)
def test_bad_control_requests(control, path, body, message):
    status, document = call(control, path, body)
    assert status in (400, 404) and message in document["error"]

"""The lab through the real ansible.builtin.winrm connection plugin (ansible-core + pywinrm).

The lab runs as `python -m tests.lab serve` in a subprocess, as users run it. Each test drives
ansible (or ansible-playbook) against it and checks what Ansible reports and what the lab counted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import yaml

from tests.integration.core_versions import RUNNER_DELIVERY, task_timeout_re
from tests.lab.testing import REPO_ROOT, running_lab, run_ansible

KB_FLEET = os.path.join(REPO_ROOT, "tests", "lab", "fleets", "kb2888788.yml")
RAW_EXIT_0 = ["-m", "ansible.builtin.raw", "-a", "exit 0", "--one-line"]
COMMAND_NOT_FOUND = (
    "The term 'Get-Date' is not recognized as the name of a cmdlet, function, script file, or operable program."
)
REJECTED = "the specified credentials were rejected by the server"
# ansible --one-line: "<host> | CHANGED | rc=0 | ...", "<host> | FAILED! => {...}", "<host> | UNREACHABLE!: ..."
_ONE_LINE_RE = re.compile(r"^(\S+) \| (CHANGED|SUCCESS|FAILED!?|UNREACHABLE!)(.*)$", re.MULTILINE)


def outcomes(result: subprocess.CompletedProcess) -> dict[str, tuple[str, str]]:
    """Per host: (state, the rest of its lines) from ansible --one-line output (a failed raw has two)."""
    found = {}
    for host, state, rest in _ONE_LINE_RE.findall(result.stdout):
        previous = found.get(host, (state.rstrip("!"), ""))
        found[host] = (previous[0], previous[1] + rest)
    return found


def failed_result(result: subprocess.CompletedProcess, host: str) -> dict:
    """The task result of `<host> | FAILED! => {...}`, which every ansible-core prints for a failed host
    (2.19 prints a `<host> | FAILED | rc=N | ...` line for raw before it, 2.17/2.18 do not)."""
    prefix = "%s | FAILED! => " % host
    lines = [line[len(prefix):] for line in result.stdout.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def servers(lab) -> dict:
    return lab.status()["servers"]


@pytest.fixture(scope="module")
def http_lab(tmp_path_factory):
    with running_lab(KB_FLEET, tmp_path=tmp_path_factory.mktemp("http-lab")) as lab:
        yield lab


@pytest.fixture(scope="module")
def https_lab(tmp_path_factory):
    with running_lab(KB_FLEET, tmp_path=tmp_path_factory.mktemp("https-lab"), https=True, auth="ntlm") as lab:
        yield lab


@pytest.fixture(scope="module")
def fleet_of_50(tmp_path_factory):
    from tests.lab.exchange.generate import generate_fleet

    path = tmp_path_factory.mktemp("generated") / "fleet-50.yml"
    path.write_text(yaml.safe_dump(generate_fleet(50)), encoding="utf-8")
    with running_lab(str(path), tmp_path=path.parent) as lab:
        yield lab


@pytest.mark.matrix
def test_raw_exit_0_reaches_every_server(http_lab):
    http_lab.reset_counters()
    result = run_ansible(["exchange", *RAW_EXIT_0], http_lab.inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    names = servers(http_lab)
    assert set(outcomes(result)) == {name.lower() for name in names}
    assert {state for state, _rest in outcomes(result).values()} == {"CHANGED"}
    for name, server in names.items():
        assert server["winrm"]["commands"] == {"runner": 0, "raw-exit0": 1, "other": 0}, name
        assert server["winrm"]["requests"]["Create"] == server["winrm"]["requests"]["Delete"] == 1


@pytest.mark.matrix
def test_unknown_command_fails_with_powershells_error(http_lab):
    http_lab.reset_counters()
    result = run_ansible(["exchange", "-m", "ansible.builtin.raw", "-a", "Get-Date", "--one-line"], http_lab.inventory)
    assert result.returncode == 2
    for host, (state, _rest) in outcomes(result).items():
        failed = failed_result(result, host)
        assert state == "FAILED" and failed["rc"] == 1 and COMMAND_NOT_FOUND in failed["stderr"], (host, failed)
    assert {server["winrm"]["commands"]["other"] for server in servers(http_lab).values()} == {1}


def test_ntlm_over_http_encrypts_every_message(http_lab):
    http_lab.reset_counters()
    result = run_ansible(["exchange", *RAW_EXIT_0, "-e", "ansible_winrm_transport=ntlm"], http_lab.inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    for server in servers(http_lab).values():
        requests = sum(server["winrm"]["requests"].values())
        assert server["winrm"]["encrypted_messages"] == requests > 0


@pytest.mark.parametrize("transport", ["ntlm", "basic"])
def test_https_with_certificate_validation(https_lab, transport):
    https_lab.reset_counters()
    result = run_ansible(["exchange", *RAW_EXIT_0, "-e", "ansible_winrm_transport=" + transport], https_lab.inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    for server in servers(https_lab).values():
        assert server["winrm"]["commands"]["raw-exit0"] == 1
        assert server["winrm"]["encrypted_messages"] == 0  # TLS protects the messages


def test_https_refuses_a_listener_from_an_untrusted_ca(https_lab):
    # The Exchange trust bundle is a different CA than the one that issued the listener certificate.
    bundle = os.path.join(https_lab.state_dir, "trust-bundle.pem")
    result = run_ansible(["exchange", *RAW_EXIT_0, "-e", "ansible_winrm_ca_trust_path=" + bundle], https_lab.inventory)
    assert result.returncode == 4
    assert all(state == "UNREACHABLE" and "CERTIFICATE_VERIFY_FAILED" in rest for state, rest in outcomes(result).values())


@pytest.mark.parametrize("transport", ["basic", "ntlm"])
def test_wrong_password_makes_hosts_unreachable(http_lab, transport):
    http_lab.reset_counters()
    extra = ["-e", "ansible_password=wrong", "-e", "ansible_winrm_transport=" + transport]
    result = run_ansible(["exchange", *RAW_EXIT_0, *extra], http_lab.inventory)
    assert result.returncode == 4
    for host, (state, rest) in outcomes(result).items():
        assert state == "UNREACHABLE" and "%s: %s" % (transport, REJECTED) in rest, host
    assert {server["winrm"]["auth_failures"] for server in servers(http_lab).values()} == {1}


@pytest.mark.matrix
def test_the_collections_runner_is_recognised_through_the_winrm_plugin(http_lab):
    http_lab.reset_counters()
    result = run_ansible(
        ["exchange", "-m", "hybridmail.exchange.certificate_info", "-e", "ansible_winrm_transport=ntlm", "--one-line"],
        http_lab.inventory,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for server in servers(http_lab).values():
        assert server["winrm"]["commands"] == {"runner": 1, "raw-exit0": 0, "other": 0}
        # The runner script came on stdin, behind the bootstrap as this ansible-core's winrm plugin wraps it.
        assert server["winrm"]["runner_deliveries"] == {RUNNER_DELIVERY: 1}


def test_fifty_concurrent_clients_and_transport_faults(fleet_of_50):
    names = list(servers(fleet_of_50))
    assert len(names) == 50
    faulty = dict(zip(("latency", "http401", "http500", "timeout", "drop"), names))
    fleet_of_50.fault(faulty["latency"], "latency", seconds=2.5)
    fleet_of_50.fault(faulty["http401"], "http401", times=1)
    fleet_of_50.fault(faulty["http500"], "http500")
    fleet_of_50.fault(faulty["timeout"], "timeout", seconds=0.1, times=3)
    fleet_of_50.fault(faulty["drop"], "drop")
    # A short OperationTimeout makes the slow command need w:TimedOut round trips.
    timeouts = ["-e", "ansible_winrm_operation_timeout_sec=1", "-e", "ansible_winrm_read_timeout_sec=5"]
    try:
        result = run_ansible(["exchange", *RAW_EXIT_0, "--forks", "50", *timeouts], fleet_of_50.inventory)
    finally:
        fleet_of_50.clear()
    results = outcomes(result)
    assert len(results) == 50, result.stdout + result.stderr
    state_of = {name: results[name.lower()] for name in names}
    assert state_of[faulty["http401"]][0] == "UNREACHABLE" and REJECTED in state_of[faulty["http401"]][1]
    assert state_of[faulty["http500"]][0] == "FAILED"
    assert "Bad HTTP response returned from server. Code 500" in state_of[faulty["http500"]][1]
    assert state_of[faulty["drop"]][0] == "FAILED" and "Connection aborted" in state_of[faulty["drop"]][1]
    healthy = [name for name in names if name not in (faulty["http401"], faulty["http500"], faulty["drop"])]
    assert {state_of[name][0] for name in healthy} == {"CHANGED"}

    counters = {name: server["winrm"] for name, server in servers(fleet_of_50).items()}
    assert counters[faulty["latency"]]["requests"]["Receive"] == 3  # timed out twice after 1 s each
    assert counters[faulty["timeout"]]["requests"]["Receive"] == 4  # three faults, then the output
    assert sum(counter["commands"]["raw-exit0"] for counter in counters.values()) == len(healthy)


def test_damaged_output_and_cmdlet_faults_reach_the_collection(fleet_of_50):
    first, second, third = list(servers(fleet_of_50))[5:8]
    fleet_of_50.fault(first, "truncate", times=1)
    fleet_of_50.fault(second, "garble", times=1)
    fleet_of_50.fault(third, "cmdlet", cmdlet="Get-ExchangeCertificate", message="The lab broke it.", times=1)
    limit = ",".join(name.lower() for name in (first, second, third))
    result = run_ansible(
        ["exchange", "--limit", limit, "-m", "hybridmail.exchange.certificate_info", "--one-line"],
        fleet_of_50.inventory,
    )
    results = outcomes(result)
    for name in (first, second):
        assert results[name.lower()][0] == "FAILED" and "garbled or truncated" in results[name.lower()][1]
    assert results[third.lower()][0] == "FAILED" and "The lab broke it." in results[third.lower()][1]


def test_endless_timeouts_hang_until_the_task_timeout(fleet_of_50):
    name = list(servers(fleet_of_50))[8]
    fleet_of_50.fault(name, "timeout", seconds=0.2)
    try:
        result = run_ansible(["exchange", "--limit", name.lower(), *RAW_EXIT_0, "--task-timeout", "3"], fleet_of_50.inventory)
    finally:
        fleet_of_50.clear(name)
    state, _rest = outcomes(result)[name.lower()]
    failed = failed_result(result, name.lower())
    assert state == "FAILED" and re.fullmatch(task_timeout_re("ansible.builtin.raw", 3), failed["msg"]), failed
    assert servers(fleet_of_50)[name]["winrm"]["requests"]["Receive"] >= 10


def test_cli_controls_a_served_lab_and_stops_cleanly_on_sigterm(tmp_path):
    inventory = tmp_path / "inventory.yml"
    pidfile = tmp_path / "lab.pid"
    command = [sys.executable, "-m", "tests.lab"]
    serve = subprocess.Popen(
        [*command, "serve", "--fleet", KB_FLEET, "--inventory", str(inventory), "--pidfile", str(pidfile)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = serve.stdout.readline().split()
        assert ready[:2] == ["LAB", "READY"] and ready[3] == str(inventory)
        assert int(pidfile.read_text()) == serve.pid
        document = yaml.safe_load(inventory.read_text())["all"]["children"]["exchange"]
        assert document["vars"]["hybridmail_lab_control_url"] == ready[2]
        assert open(document["vars"]["hybridmail_trust_bundle"]).read().startswith("-----BEGIN CERTIFICATE-----")
        name = next(iter(document["hosts"].values()))["hybridmail_lab_server"]

        def cli(*args):
            return subprocess.run(
                [*command, *args, "--inventory", str(inventory)], cwd=REPO_ROOT, capture_output=True, text=True, check=False
            )

        assert cli("fault", "--server", name, "--kind", "garble", "--times", "2").returncode == 0
        assert '"kind": "garble"' in cli("status").stdout
        refused = cli("fault", "--server", "NOPE", "--kind", "drop")
        assert refused.returncode == 1 and "unknown server" in refused.stderr
        assert cli("clear").returncode == 0
        assert '"kind": "garble"' not in cli("status").stdout
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=15) == 0
    assert not pidfile.exists()

"""PowerShell host emulation: the three ways the collection's script arrives, `exit 0`, and the rest.

Command lines are produced with ansible-core's own encoder (ansible.builtin.powershell) wherever
Ansible is the one encoding them, so a change there shows up here.
"""

from __future__ import annotations

import base64

import pytest
from ansible.plugins.shell.powershell import ShellModule, _parse_clixml

from tests.lab import psh

RUNNER = psh.runner_contract()
REQUEST = {"version": 1, "read_only": True, "session": {"load": "auto"}, "calls": []}
TEST_RUNNER_TEXT = "# a stand-in runner\nWrite-Output 'runner'\n"


class RecordingServer:
    name = "EX01"

    def __init__(self):
        self.requests = []

    def handle_request(self, request: dict, user: str | None = None) -> dict:
        self.requests.append(request)
        return {"version": 1, "host": self.name, "calls": [], "note": "Zürich čeština"}


@pytest.fixture
def server():
    return RecordingServer()


@pytest.fixture
def host():
    return psh.PowerShellHost(runner_text=TEST_RUNNER_TEXT)


def ansible_encode(script: str, **options) -> str:
    """A command line as ansible.builtin.powershell encodes one (lines stripped, empty ones dropped)."""
    return " ".join(ShellModule()._encode_script(script, as_list=True, **options))


def response_of(outcome: psh.Outcome) -> dict:
    assert outcome.exit_code == 0 and outcome.kind == psh.KIND_RUNNER, outcome
    assert outcome.stdout.endswith(b"\r\n")
    return RUNNER.decode_json(RUNNER.find_result(outcome.stdout.decode("ascii")))


def test_runner_on_stdin_behind_the_bootstrap_as_ansible_2_19_sends_it(host, server):
    script = RUNNER.compose_script(REQUEST, TEST_RUNNER_TEXT)
    outcome = host.run(RUNNER.encoded_bootstrap(), script.encode("ascii"), server)
    assert response_of(outcome)["note"] == "Zürich čeština"
    assert server.requests == [REQUEST]
    assert outcome.delivery == "stdin:1"


def test_runner_double_encoded_as_ansible_2_17_and_2_18_send_it(host, server):
    command_line = ansible_encode(RUNNER.encoded_bootstrap(), strict_mode=False, preserve_rc=False)
    script = RUNNER.compose_script(REQUEST, TEST_RUNNER_TEXT)
    outcome = host.run(command_line, script.encode("ascii"), server)
    assert response_of(outcome)["host"] == "EX01" and server.requests == [REQUEST]
    # The outer PowerShell's decoded command is the bootstrap's command line; the script came on stdin.
    assert outcome.delivery == "stdin:2"


def test_double_encoded_bootstrap_without_stdin_runs_nothing(host, server):
    # The bootstrap reads its script from stdin: with nothing there, the runner never runs.
    command_line = ansible_encode(RUNNER.encoded_bootstrap(), strict_mode=False, preserve_rc=False)
    outcome = host.run(command_line, b"", server)
    assert (outcome.kind, outcome.delivery, server.requests) == (psh.KIND_OTHER, None, [])


def test_runner_behind_a_bootstrap_with_ansible_wrappers(host, server):
    # _encode_script's defaults add Set-StrictMode before and an exit code line after the script.
    command_line = ansible_encode(RUNNER.BOOTSTRAP)
    script = RUNNER.compose_script(REQUEST, TEST_RUNNER_TEXT).replace("\n", "\r\n")
    assert response_of(host.run(command_line, script.encode("ascii"), server))["host"] == "EX01"


def test_runner_as_the_encoded_command_itself(host, server):
    command_line = RUNNER.encode_command(RUNNER.compose_script(REQUEST, TEST_RUNNER_TEXT))
    outcome = host.run(command_line, b"", server)
    assert response_of(outcome)["host"] == "EX01" and outcome.delivery == "command:1"


def test_the_shipped_runner_ps1_is_the_default(server):
    script = RUNNER.compose_script(REQUEST)  # reads plugins/plugin_utils/runner.ps1
    outcome = psh.PowerShellHost().run(RUNNER.encoded_bootstrap(), script.encode("ascii"), server)
    assert response_of(outcome)["host"] == "EX01"


def test_a_changed_runner_is_refused_loudly(host, server):
    script = RUNNER.compose_script(REQUEST, TEST_RUNNER_TEXT.replace("'runner'", "'other'"))
    outcome = host.run(RUNNER.encoded_bootstrap(), script.encode("ascii"), server)
    assert (outcome.exit_code, outcome.kind, outcome.stdout) == (1, psh.KIND_OTHER, b"")
    assert b"not the shipped runner.ps1 (first difference at runner.ps1 line 2)" in _parse_clixml(outcome.stderr)
    assert server.requests == []


def test_a_request_that_is_not_base64_json_gets_the_runners_bad_request_answer(host, server):
    script = "$HybridmailRequest = 'bm90IGpzb24='\n" + TEST_RUNNER_TEXT
    response = response_of(host.run(RUNNER.encoded_bootstrap(), script.encode("ascii"), server))
    assert response["error"]["type"] == "BadRequest" and response["calls"] == []
    assert server.requests == []


def test_exit_0_as_the_raw_module_sends_it(host, server):
    # Observed with ansible-core 2.19 -vvvvv: the raw module's text, encoded without wrappers.
    command_line = "PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand ZQB4AGkAdAAgADAA"
    assert ansible_encode("exit 0", strict_mode=False, preserve_rc=False) == command_line
    assert host.run(command_line, b"", server) == psh.Outcome(b"", b"", 0, psh.KIND_EXIT0)


def test_unknown_command_prints_command_not_found_as_clixml(host, server):
    outcome = host.run(ansible_encode("Get-Date", strict_mode=False, preserve_rc=False), b"", server)
    assert (outcome.exit_code, outcome.kind, outcome.stdout) == (1, psh.KIND_OTHER, b"")
    assert outcome.stderr.startswith(b"#< CLIXML\r\n<Objs ")
    assert _parse_clixml(outcome.stderr).decode("utf-8").splitlines() == [
        "Get-Date : The term 'Get-Date' is not recognized as the name of a cmdlet, function, script file, or "
        "operable program. Check the spelling of the name, or if a path was included, verify that the path is "
        "correct and try again.",
        "At line:1 char:1",
        "+ Get-Date",
        "+ ~~~~~~~~",
        "    + CategoryInfo          : ObjectNotFound: (Get-Date:String) [], CommandNotFoundException",
        "    + FullyQualifiedErrorId : CommandNotFoundException",
        " ",
    ]


def test_command_not_found_points_at_the_first_command_word():
    text = _parse_clixml(psh.command_not_found("\n  Get-Thing -Name <x> & more")).decode("utf-8")
    assert "The term 'Get-Thing' is not recognized" in text
    assert "At line:2 char:3" in text and "+   Get-Thing -Name <x> & more" in text and "+   ~~~~~~~~~\r" in text


def test_command_minus_reads_the_script_from_stdin(host, server):
    outcome = host.run("powershell.exe -NonInteractive -Command -", b"exit 0\r\n", server)
    assert outcome.kind == psh.KIND_EXIT0


def test_parameter_prefixes_and_values_are_understood(host, server):
    encoded = base64.b64encode("exit 0".encode("utf-16-le")).decode("ascii")
    assert host.run("pwsh -ex Bypass -enc " + encoded, b"", server).kind == psh.KIND_EXIT0
    assert host.run("PowerShell -e " + encoded, b"", server).kind == psh.KIND_EXIT0
    assert host.run("PowerShell -NoProfile exit 0", b"", server).kind == psh.KIND_EXIT0


def test_an_encoded_command_that_is_not_base64(host, server):
    outcome = host.run("PowerShell -EncodedCommand %%%", b"", server)
    assert outcome.exit_code == 1 and b"not properly encoded" in outcome.stderr


def test_command_lines_without_powershell_go_to_cmd(host, server):
    assert host.run("exit 3", b"", server).exit_code == 3
    outcome = host.run("ipconfig /all", b"", server)
    assert outcome.exit_code == 1
    assert outcome.stderr.startswith(b"'ipconfig' is not recognized as an internal or external command")


def test_runner_text_comparison_forgives_only_line_endings_and_trailing_newlines():
    assert psh.normalize_runner_text("a\r\nb\r\n\r\n") == "a\nb"
    assert psh.normalize_runner_text(" a\n") != psh.normalize_runner_text("a\n")


@pytest.mark.parametrize("mode", ["ConstrainedLanguage", "RestrictedLanguage"])
def test_runner_outside_full_language_prints_the_refusal_line_and_exits_1(host, server, mode):
    server.language_mode = mode
    script = RUNNER.compose_script(REQUEST, TEST_RUNNER_TEXT)
    outcome = host.run(RUNNER.encoded_bootstrap(), script.encode("ascii"), server)
    assert outcome.exit_code == 1 and outcome.stderr == b""
    assert outcome.stdout == ("HYBRIDMAIL-REFUSED:LanguageMode:%s\r\n" % mode).encode("ascii")
    assert RUNNER.find_refusal(outcome.stdout.decode("ascii")) == ("LanguageMode", mode)
    assert server.requests == []  # nothing ran


def test_the_shell_owner_reaches_the_server(host, server):
    received = []
    server.handle_request = lambda request, user=None: received.append(user) or {"version": 1, "calls": []}
    host.run(RUNNER.encoded_bootstrap(), RUNNER.compose_script(REQUEST, TEST_RUNNER_TEXT).encode("ascii"), server,
             user="Administrator")
    assert received == ["Administrator"]

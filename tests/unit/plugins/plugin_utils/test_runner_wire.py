"""The wire contract's codecs (_runner): encodings, the composed script, the result line, guards."""

import base64
import json

import pytest

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _args, _runner
from tests.lab import wire

REQUEST = {
    "version": 1,
    "read_only": True,
    "session": {"load": "auto"},
    "calls": [
        {"id": "certs", "cmdlet": "Get-ExchangeCertificate",
         "parameters": {"Server": {"__hybridmail": "computername"}},
         "properties": ["Thumbprint", "Services", "RawData"],
         "expect": [{"Thumbprint": "AB12", "Services": "IMAP, POP, IIS, SMTP"}]},
        {"id": "events", "cmdlet": "Get-WinEvent",
         "parameters": {"FilterHashtable": {"LogName": "Application", "Id": 2004,
                                            "StartTime": {"__hybridmail": "days_ago", "value": 7}},
                        "MaxEvents": 50},
         "properties": ["Message"]},
    ],
}
RESPONSE = {
    "version": 1, "host": "EX01",
    "runner": {"powershell": "5.1.17763.5830", "load": "snapin", "elapsed_ms": 2210},
    "calls": [
        {"id": "certs", "ok": True, "objects": [
            {"Thumbprint": "AB12", "Subject": "CN=mail.contoso.com, O=M\u00fcller GmbH", "Services": "IMAP, POP, IIS, SMTP"}]},
        {"id": "events", "ok": True, "objects": [
            {"Message": "Konektor pro odes\u00edl\u00e1n\u00ed: \u010cesk\u00e1 po\u0161ta ... 454 4.7.0 ... UntrustedRoot"}]},
    ],
}


@pytest.mark.parametrize("text", ["O=M\u00fcller GmbH", "\u010cesk\u00e1 po\u0161ta", "\u65e5\u672c", "\U0001F512", ""])
def test_encode_decode_round_trip_non_ascii(text):
    document = {"value": text, "list": [text, None, True, 3]}
    encoded = _runner.encode_json(document)
    encoded.encode("ascii")
    assert _runner.decode_json(encoded) == document
    # UTF-8, not escapes: what a runner's [Text.Encoding]::UTF8 produces and reads
    raw = base64.b64decode(encoded)
    assert text.encode("utf-8") in raw


def test_decode_tolerates_surrounding_whitespace():
    assert _runner.decode_json("  " + _runner.encode_json(RESPONSE) + "\r\n") == RESPONSE


@pytest.mark.parametrize("garbage", [
    "not base64 at all!",
    _runner.encode_json(RESPONSE)[:-7],                                     # truncated base64
    base64.b64encode(json.dumps(RESPONSE).encode("utf-8")[:-10]).decode(),  # truncated JSON
    base64.b64encode(b"\xff\xfe\x00x").decode(),                            # not UTF-8
    base64.b64encode("{\"a\": M\u00fcller}".encode("utf-8")).decode(),      # not JSON
])
def test_decode_rejects_garbage(garbage):
    with pytest.raises(ValueError):
        _runner.decode_json(garbage)


def test_compose_and_split_round_trip():
    script = _runner.compose_script(REQUEST)
    script.encode("ascii")
    first_line, rest = script.split("\n", 1)
    assert first_line.startswith("$HybridmailRequest = '")
    assert rest == _runner.load_runner_text()
    request_b64, runner_text = wire.split_script(script)
    assert _runner.decode_json(request_b64) == REQUEST
    assert runner_text == _runner.load_runner_text()


def test_compose_with_given_runner_text_and_crlf_header():
    script = _runner.compose_script(REQUEST, runner_text="Write-Output 1\n")
    assert wire.split_script(script)[1] == "Write-Output 1\n"
    crlf = script.replace("\n", "\r\n", 1)
    assert _runner.decode_json(wire.split_script(crlf)[0]) == REQUEST


@pytest.mark.parametrize("script", ["", "Write-Output 1\n", "$HybridmailRequest = \"abc\"\nrest",
                                    "$Other = 'abc'\nrest", " $HybridmailRequest = 'abc'\nrest"])
def test_split_without_header(script):
    assert wire.split_script(script) is None


def test_bootstrap_is_ansibles_powershell_encoding():
    command = _runner.encoded_bootstrap()
    prefix = " ".join(_runner.POWERSHELL_ARGS) + " -EncodedCommand "
    assert command.startswith(prefix)
    assert base64.b64decode(command[len(prefix):]).decode("utf-16-le") == _runner.BOOTSTRAP
    assert "$input" in _runner.BOOTSTRAP
    assert _runner.REQUEST_VARIABLE not in _runner.BOOTSTRAP


def test_bootstrap_is_not_wrapped_again_by_winrm_or_psrp():
    shell_loader = pytest.importorskip("ansible.plugins.loader").shell_loader
    shell = shell_loader.get("powershell")
    winrm_prefix = shell._encode_script("", as_list=False, strict_mode=False, preserve_rc=False)
    assert _runner.encoded_bootstrap().startswith(winrm_prefix)
    psrp = pytest.importorskip("ansible.plugins.connection.psrp")
    assert _runner.encoded_bootstrap().startswith(" ".join(psrp._common_args) + " -EncodedCommand")


def test_find_result_among_noise():
    line = wire.result_line(RESPONSE)
    stdout = "\r\n".join([
        "WARNING: The names of some imported commands from the module 'tmp_x' include unapproved verbs",
        "HYBRIDMAIL-RESULTS are coming",
        "",
        "   " + line + "   ",
        "Welcome to the Exchange Management Shell!",
    ])
    assert _runner.decode_json(_runner.find_result(stdout)) == RESPONSE


def test_find_result_takes_the_last_result_line():
    first = wire.result_line({"version": 1, "n": 1})
    last = wire.result_line({"version": 1, "n": 2})
    assert _runner.decode_json(_runner.find_result(first + "\n" + last + "\n")) == {"version": 1, "n": 2}


@pytest.mark.parametrize("stdout", ["", "\r\n", "WARNING: nothing\n", "hybridmail-result:abc\n"])
def test_find_result_none(stdout):
    assert _runner.find_result(stdout) is None


def test_result_line_shape():
    line = wire.result_line(RESPONSE)
    assert line.startswith(_runner.RESULT_PREFIX)
    assert "\n" not in line
    line.encode("ascii")


def test_allow_list_and_mutations():
    assert len(set(_runner.ALLOWED_CMDLETS)) == len(_runner.ALLOWED_CMDLETS)
    assert all(helper.startswith("Get-") for helper in _runner.RUNNER_HELPERS)
    mutations = [name for name in _runner.ALLOWED_CMDLETS if _runner.is_mutation(name)]
    assert mutations == ["Enable-ExchangeCertificate", "Remove-ExchangeCertificate", "Set-SendConnector",
                         "Set-ReceiveConnector", "Import-ExchangeCertificate", "Set-HybridConfiguration"]
    for name in ("Import-ExchangeCertificate", "Set-HybridConfiguration", "Get-ManagementRoleAssignment", "Get-ManagementRole"):
        assert name in _runner.EXCHANGE_CMDLETS
    assert _runner.is_mutation("get-ExchangeCertificate")  # case matters: the runner refuses it too


def test_the_session_option_offers_the_runner_loads_and_e2010_only_to_refuse_it():
    assert set(_args.SESSION_CHOICES) == set(_runner.SESSION_LOADS) | {"e2010"} and "e2010" not in _runner.SESSION_LOADS
    with pytest.raises(_args.OptionError, match="Exchange 2010"):
        _args.check_session({"exchange_session": "e2010"})

"""Static checks of runner.ps1: it parses, is ASCII, runs only what it should, and agrees with _runner.

No PowerShell runs here, so these checks walk the tree-sitter-powershell syntax tree instead.
"""

import re

import pytest

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _runner

tree_sitter = pytest.importorskip("tree_sitter")
tree_sitter_powershell = pytest.importorskip("tree_sitter_powershell")

# Commands the runner may invoke by name, besides the functions it defines itself.
BUILTIN_COMMANDS = {
    "Set-StrictMode",
    "New-Object",
    "Get-ChildItem",   # Cert:\LocalMachine\My
    "Get-Command",     # are the Exchange cmdlets there?
    "Get-PSSnapin",
    "Add-PSSnapin",
    "Join-Path",
    "Test-Path",
    "Get-Date",
    "ConvertFrom-Json",
    "ConvertTo-Json",
    "Write-Output",    # the one result line
}
# Defined by Exchange's RemoteExchange.ps1, which the runner dot-sources (session.load remote_exchange).
EXCHANGE_LOADER_COMMANDS = {"Connect-ExchangeServer"}

FORBIDDEN = [
    r"Invoke-Expression", r"\biex\b", r"Add-Type", r"ScriptBlock\]::Create", r"NewScriptBlock",
    r"Net\.WebClient", r"WebRequest", r"Invoke-RestMethod", r"\biwr\b", r"\birm\b", r"HttpClient",
    r"Start-Process", r"Invoke-Command", r"New-PSSession", r"Enter-PSSession", r"Invoke-Item",
    r"Start-BitsTransfer", r"DownloadString", r"DownloadFile", r"Net\.Sockets", r"Reflection\.Assembly",
    r"Set-Content", r"Add-Content", r"Out-File", r"New-Item", r"Remove-Item", r"Set-Item", r"New-ItemProperty",
    r"EncodedCommand", r"https?://", r"\$ExecutionContext", r"Register-ScheduledTask", r"Set-ExecutionPolicy",
]
PS7_ONLY = [r"\?\?", r"\?\.", r"\?\[", r"&&", r"\|\|", r"-AsHashtable", r"-Parallel", r"\$PSStyle"]


@pytest.fixture(scope="module")
def source():
    with open(_runner.RUNNER_PATH, "rb") as runner_file:
        return runner_file.read()


@pytest.fixture(scope="module")
def tree(source):
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    return parser.parse(source)


def walk(node):
    yield node
    for child in node.children:
        yield from walk(child)


def text(node):
    return node.text.decode("ascii")


def code_only(source, tree, strip_strings=False):
    """The source with comments (and optionally string literals) blanked out."""
    kinds = {"comment"} | ({"string_literal"} if strip_strings else set())
    data = bytearray(source)
    for node in walk(tree.root_node):
        if node.type in kinds:
            for index in range(node.start_byte, node.end_byte):
                if data[index] not in (0x0A,):
                    data[index] = 0x20
    return data.decode("ascii")


def functions(tree):
    """{function name: function_statement node}"""
    found = {}
    for node in walk(tree.root_node):
        if node.type == "function_statement":
            name = next(child for child in node.children if child.type == "function_name")
            assert text(name) not in found, "function %s defined twice" % text(name)
            found[text(name)] = node
    return found


def enclosing_function(node):
    while node is not None:
        if node.type == "function_statement":
            return text(next(child for child in node.children if child.type == "function_name"))
        node = node.parent
    return None


def commands(tree):
    """(kind, name, operator, node) for every command invocation: kind is name, variable or string."""
    found = []
    for node in walk(tree.root_node):
        if node.type != "command":
            continue
        operator = None
        for child in node.children:
            if child.type == "command_invokation_operator":
                operator = text(child)
            elif child.type == "command_name":
                found.append(("name", text(child), operator, node))
            elif child.type == "command_name_expr":
                inner = child.children[0]
                if inner.type == "path_command_name" and inner.children[0].type == "path_command_name_token":
                    found.append(("name", text(inner), operator, node))
                elif inner.type == "path_command_name" and inner.children[0].type == "variable":
                    found.append(("variable", text(inner), operator, node))
                else:
                    found.append(("string", text(inner), operator, node))
    return found


def assigned_strings(tree, variable):
    """The string literals of the one assignment `$variable = @(...)`."""
    assignments = []
    for node in walk(tree.root_node):
        if node.type == "assignment_expression":
            left = node.children[0]
            if text(left).strip().lower() == "$" + variable.lower():
                assignments.append(node)
    assert len(assignments) == 1, "$%s must be assigned exactly once" % variable
    values = []
    for node in walk(assignments[0].children[-1]):
        if node.type == "string_literal":
            values.append(text(node).strip("'\""))
    return tuple(values)


def test_parses_without_errors(tree):
    problems = [(node.type, node.start_point) for node in walk(tree.root_node) if node.type == "ERROR" or node.is_missing]
    assert not problems
    assert not tree.root_node.has_error


def test_is_pure_ascii_with_lf_line_ends(source):
    source.decode("ascii")
    assert b"\r" not in source
    assert b"\t" not in source
    assert _runner.load_runner_text().encode("ascii") == source


def test_no_forbidden_constructs(source, tree):
    code = code_only(source, tree)
    for pattern in FORBIDDEN:
        assert not re.search(pattern, code, re.IGNORECASE), pattern


def test_no_powershell_7_only_syntax(source, tree):
    code = code_only(source, tree, strip_strings=True)
    for pattern in PS7_ONLY:
        assert not re.search(pattern, code, re.IGNORECASE), pattern
    # ternary: `<expr> ? <expr> : <expr>` (PowerShell 7); no bare ? is needed anywhere
    assert not re.search(r"\s\?\s", code)


def test_every_command_is_known(tree):
    defined = set(functions(tree))
    for kind, name, operator, node in commands(tree):
        if kind == "name":
            assert name in BUILTIN_COMMANDS | defined | EXCHANGE_LOADER_COMMANDS, "unexpected command %s" % name
            assert operator in (None, "."), name
            assert operator is None or name == "Import-HybridmailExchange", "only the loader is dot-sourced: %s" % name


def test_dynamic_call_sites_are_the_guarded_ones(tree):
    dynamic = [(kind, name, operator, enclosing_function(node)) for kind, name, operator, node in commands(tree)
               if kind != "name"]
    assert sorted(dynamic) == [
        ("variable", "$cmdletName", "&", "Invoke-HybridmailCall"),
        ("variable", "$remoteExchangeScript", ".", "Import-HybridmailExchange"),
    ]
    body = text(functions(tree)["Invoke-HybridmailCall"])
    check = body.index("if ($AllowedCmdlets -cnotcontains $cmdletName)")
    assert check < body.index("& $cmdletName @splat")
    assert body.count("$cmdletName =") == 1 and "$cmdletName = $Call['cmdlet']" in body
    loader = text(functions(tree)["Import-HybridmailExchange"])
    assert "$remoteExchangeScript = Join-Path -Path $loadInstallPath -ChildPath 'bin\\RemoteExchange.ps1'" in loader
    assert loader.count("$remoteExchangeScript =") == 1


def test_requests_are_refused_before_any_call(tree):
    refusal = text(functions(tree)["Test-HybridmailRefusal"])
    assert "$AllowedCmdlets -cnotcontains $call['cmdlet']" in refusal
    assert "$Request['read_only'] -and $call['mutation']" in refusal
    reader = text(functions(tree)["Read-HybridmailRequest"])
    assert "-not $call['cmdlet'].StartsWith('Get-', [System.StringComparison]::Ordinal)" in reader


def test_allow_list_matches_runner_module(tree):
    assert assigned_strings(tree, "AllowedCmdlets") == _runner.ALLOWED_CMDLETS
    assert assigned_strings(tree, "SessionFreeCmdlets") == _runner.WINDOWS_CMDLETS + _runner.RUNNER_HELPERS
    assert assigned_strings(tree, "SessionLoads") == _runner.SESSION_LOADS


def test_helpers_match_runner_module(tree):
    defined = set(functions(tree))
    assert {name for name in defined if name.startswith("Get-Hybridmail")} == set(_runner.RUNNER_HELPERS)
    # no function may shadow an Exchange or Windows cmdlet of the allow-list
    assert defined & set(_runner.ALLOWED_CMDLETS) == set(_runner.RUNNER_HELPERS)
    for helper in _runner.RUNNER_HELPERS:
        assert "[CmdletBinding()]" in text(functions(tree)[helper])


def test_wire_constants_match(source):
    code = source.decode("ascii")
    assert "$HybridmailWireVersion = %d\n" % _runner.WIRE_VERSION in code
    assert "$HybridmailResultPrefix = '%s'\n" % _runner.RESULT_PREFIX in code
    assert "-Encoded $%s\n" % _runner.REQUEST_VARIABLE in code


def test_one_output_line_then_exit_zero(source, tree):
    names = [name for kind, name, _operator, _node in commands(tree) if kind == "name"]
    assert names.count("Write-Output") == 1
    assert names.count("ConvertTo-Json") == 1
    code = code_only(source, tree).rstrip()
    assert code.endswith("Write-Output -InputObject ($HybridmailResultPrefix + $HybridmailPayload)\nexit 0")
    assert code.lstrip().startswith("Set-StrictMode -Version 2\n")
    assert "ConvertTo-Json -InputObject $HybridmailResponse -Depth 10 -Compress" in code

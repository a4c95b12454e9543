"""Static checks of runner.ps1: it parses, is ASCII, runs only what it should, and agrees with _runner.

No PowerShell runs here, so these checks walk the tree-sitter-powershell syntax tree instead.
"""

import re

import pytest

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _runner
from tests.lab import wire

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
    "Get-Content",     # bin\exShell.psc1 (Edge)
    "Import-Module",   # bin\RemoteExchange.ps1
    "Join-Path",
    "Get-Date",
    "ConvertTo-SecureString",
    "ConvertFrom-Json",
    "ConvertTo-Json",
    "Where-Object",
    "Select-Object",
    "Write-Output",    # the one result line (and the language-mode refusal)
}
# Defined by Exchange's RemoteExchange.ps1, which the runner imports (session.load remote_exchange).
EXCHANGE_LOADER_COMMANDS = {"Connect-ExchangeServer"}
# Commands that write nothing to the output stream: they may stand as statements of their own.
NO_OUTPUT_COMMANDS = {"Set-StrictMode", "Add-PSSnapin", "Import-Module"}
# Calls without -ErrorAction Stop, each with its reason (the runner says the same in a comment).
ERROR_ACTION_EXCEPTIONS = {
    "Get-Command": "-ErrorAction Ignore: a probe, 'no such command' is an answer",
    "Get-PSSnapin": "-ErrorAction Ignore: a probe, 'not added' is an answer",
    "Connect-ExchangeServer": "Exchange's function reports through Write-Host and $Error; the probe judges",
}

FORBIDDEN = [
    r"Invoke-Expression", r"\biex\b", r"Add-Type", r"ScriptBlock\]::Create", r"NewScriptBlock",
    r"Net\.WebClient", r"WebRequest", r"Invoke-RestMethod", r"\biwr\b", r"\birm\b", r"HttpClient",
    r"Start-Process", r"Invoke-Command", r"New-PSSession", r"Enter-PSSession", r"Invoke-Item",
    r"Start-BitsTransfer", r"DownloadString", r"DownloadFile", r"Net\.Sockets", r"Reflection\.Assembly",
    r"Set-Content", r"Add-Content", r"Out-File", r"New-Item", r"Remove-Item", r"Set-Item", r"New-ItemProperty",
    r"EncodedCommand", r"https?://", r"\$ExecutionContext(?!\.SessionState\.LanguageMode\b)",
    r"Register-ScheduledTask", r"Set-ExecutionPolicy", r"\$Error\b\s*=",
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
            assert operator is None, "nothing is dot-sourced or invoked by name with an operator: %s" % name


def test_dynamic_call_site_is_the_guarded_one(tree):
    dynamic = [(kind, name, operator, enclosing_function(node)) for kind, name, operator, node in commands(tree)
               if kind != "name"]
    assert dynamic == [("variable", "$cmdletName", "&", "Invoke-HybridmailCall")]
    body = text(functions(tree)["Invoke-HybridmailCall"])
    check = body.index("if ($AllowedCmdlets -cnotcontains $cmdletName)")
    assert check < body.index("& $cmdletName @splat")
    assert body.count("$cmdletName =") == 1 and "$cmdletName = $Call.Cmdlet" in body
    assert body.count("$splat =") == 1 and "$splat = $Call.Arguments" in body


def test_requests_are_refused_before_any_call(tree):
    """The whole request is decoded and checked first: one call that is not allowed, or a mutation in a
    read-only request, refuses it before the session loads and before any call runs."""
    prepare = text(functions(tree)["ConvertFrom-HybridmailRequest"])
    assert "$mutation = -not $name.StartsWith('Get-', [System.StringComparison]::Ordinal)" in prepare
    refusal = prepare.index("$refused = $AllowedCmdlets -cnotcontains $name -or ($plan.read_only -ne $false -and $mutation)")
    assert refusal < prepare.index("if ($refused) { return [pscustomobject]@{ Refused = ") < prepare.index("$calls.Add(")
    assert "Invoke-HybridmailCall" not in prepare and "Import-HybridmailExchange" not in prepare
    request = text(functions(tree)["Invoke-HybridmailRequest"])
    # prepared (or refused) < session loaded < calls run; each happens once
    prepared = request.index("$request = ConvertFrom-HybridmailRequest -Encoded $Encoded")
    refused = request.index("if ($null -ne $request.Refused) { return ")
    assert prepared < refused < request.index("Import-HybridmailExchange -LoadMode") < request.index("Invoke-HybridmailCall -Call")
    assert request.count("Invoke-HybridmailCall -Call") == 1 and request.count("Import-HybridmailExchange") == 1
    # a failed session load answers before the loop over calls
    assert request.index("type = 'SessionLoadFailed'") < request.index("foreach ($call in $request.Calls)")


def test_every_cmdlet_call_passes_error_action_stop(source, tree):
    """[H6] Exchange's errors are non-terminating: without -ErrorAction Stop, try/catch sees none."""
    defined = set(functions(tree))
    seen = set()
    for kind, name, _operator, node in commands(tree):
        if kind != "name" or name in defined:
            continue
        seen.add(name)
        elements = [child for child in node.children if child.type == "command_elements"]
        tokens = [text(child) for element in elements for child in element.children if child.type != "command_argument_sep"]
        if name in ERROR_ACTION_EXCEPTIONS:
            continue
        if name == "Write-Output" and "HYBRIDMAIL-REFUSED" in text(node):
            continue  # the ConstrainedLanguage refusal: before any preference, with the least there is
        pairs = list(zip(tokens, tokens[1:]))
        assert ("-ErrorAction", "Stop") in pairs, "%s without -ErrorAction Stop: %s" % (name, text(node))
    assert set(ERROR_ACTION_EXCEPTIONS) <= seen  # no stale exception
    # the dynamic call: ErrorAction = 'Stop' is set after the request's own parameters, whatever they said
    prepare = text(functions(tree)["ConvertFrom-HybridmailRequest"])
    copied = prepare.index("$arguments[$parameter.Name] = ConvertTo-HybridmailArgument")
    assert copied < prepare.index("$arguments['ErrorAction'] = 'Stop'") < prepare.index("$calls.Add(")
    code = code_only(source, tree)
    for name, reason in ERROR_ACTION_EXCEPTIONS.items():
        assert name in code and reason


_CAPTURING = {"assignment_expression", "array_expression", "sub_expression", "parenthesized_expression",
              "script_block_expression"}


def _captured(node) -> tuple:
    """(captured, enclosing function name or None) for a statement: is its output taken by an
    assignment, @(...), $(...), (...) or a script block argument before it reaches a function's or the
    script's output stream?"""
    parent = node.parent
    while parent is not None and parent.type != "function_statement":
        if parent.type in _CAPTURING:
            return True, None
        parent = parent.parent
    return False, enclosing_function(node)


def test_nothing_but_the_result_line_reaches_the_output_stream(source, tree):
    """[H10] Every value not meant for the output is assigned; helpers write only their one object."""
    lists = {match.group(1) for match in re.finditer(
        r"(\$\w+) = New-Object -TypeName 'System\.Collections\.Generic\.List\[object\]'", source.decode("ascii"))}
    helpers = set(_runner.RUNNER_HELPERS)
    top_level_output = []
    for node in walk(tree.root_node):
        if node.type != "pipeline" or node.parent.type != "statement_list":
            continue
        if node.children[0].type == "assignment_expression":
            continue
        captured, function = _captured(node)
        if captured:
            continue
        statement = text(node).strip()
        first_word = statement.split()[0]
        if first_word in NO_OUTPUT_COMMANDS:
            continue
        if re.match(r"(\$\w+)\.Add\(", statement) and statement.split(".")[0] in lists:
            continue  # List[object].Add returns void
        if function in helpers and statement.startswith("[pscustomobject]"):
            continue  # a helper's one output object per item
        if function is None and first_word == "Write-Output":
            top_level_output.append(statement)
            continue
        raise AssertionError("statement writes to the output stream: %s (in %s)" % (statement, function or "the script"))
    assert top_level_output == [
        "Write-Output ('HYBRIDMAIL-REFUSED:LanguageMode:' + $ExecutionContext.SessionState.LanguageMode)",
        "Write-Output -InputObject ($HybridmailResultPrefix + $HybridmailPayload) -ErrorAction Stop",
    ]


def test_language_mode_is_checked_first_with_constrained_language_constructs(source, tree):
    """[H15] The first statement; in ConstrainedLanguage only core types and no method calls are safe."""
    statements = [child for child in walk(tree.root_node) if child.parent is not None
                  and child.parent.type == "statement_list" and child.parent.parent == tree.root_node]
    first = statements[0]
    assert first.type == "if_statement"
    assert text(first) == (
        "if ($ExecutionContext.SessionState.LanguageMode -ne 'FullLanguage') {\n"
        "    Write-Output ('%s' + $ExecutionContext.SessionState.LanguageMode)\n"
        "    exit 1\n}" % wire.refusal_line("LanguageMode", ""))
    assert "[" not in text(first) and ".(" not in text(first).replace(" ", "")


def test_runner_is_small(source):
    """The issue's hard limit: an Exchange admin reads the whole file in minutes."""
    assert source.count(b"\n") <= 300


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
    assert "Invoke-HybridmailRequest -Encoded $%s -Runner" % _runner.REQUEST_VARIABLE in code
    assert "FromBase64String($Encoded)" in code
    assert "'HYBRIDMAIL-REFUSED:LanguageMode:'" in code and _runner.REFUSED_PREFIX == "HYBRIDMAIL-REFUSED:"


def test_one_output_line_then_exit_zero(source, tree):
    names = [name for kind, name, _operator, _node in commands(tree) if kind == "name"]
    assert names.count("Write-Output") == 2  # the result line, and the language-mode refusal
    assert names.count("ConvertTo-Json") == 1
    code = code_only(source, tree).rstrip()
    assert code.endswith("Write-Output -InputObject ($HybridmailResultPrefix + $HybridmailPayload) -ErrorAction Stop\nexit 0")
    assert "\n}\nSet-StrictMode -Version 2 -ErrorAction Stop" in code  # right after the language-mode check
    # [H1] [H2] -InputObject (not the pipeline) and a depth for the whole response
    assert "ConvertTo-Json -InputObject $HybridmailResponse -Depth 10 -Compress -ErrorAction Stop" in code


def test_hazard_comments(source):
    """Each Windows PowerShell 5.1 hazard of the issue has its tag in the header and at its site."""
    code = source.decode("ascii")
    header = code[:code.index("if ($ExecutionContext")]
    for number in range(1, 17):
        assert re.search(r"^#.*\bH%d " % number, header, re.MULTILINE), number
    for number in (1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15, 16):
        assert code.count("[H%d]" % number) >= 1, number
    assert "Shared/Confirm-ExchangeShell.ps1" in code and "Import-Module -Name (Join-Path" in code
    # [H16] each load step remembers $Error's size first, and its problem names the errors recorded since
    loader = code[code.index("function Import-HybridmailExchange"):code.index("function ConvertTo-HybridmailValue")]
    assert loader.index("$errorCount = $Error.Count") < loader.index("try {")
    assert "Select-Object -First ([System.Math]::Max(0, $Error.Count - $errorCount))" in loader
    assert loader.index("$problem += ' (after: '") < loader.index("$problems += ($step + ': ' + $problem)")

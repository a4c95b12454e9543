"""The server's side of the wire contract (docs/wire-contract.md), as the lab plays runner.ps1.

The collection's plugins/plugin_utils/_runner.py holds what the controller needs (composing the
script, finding the result line). The inverses only the server needs (splitting the script the
controller sent, printing a result or refusal line, comparing a guard's rows) live here, so that no
lab-only code ships in the collection. The contract module is pure standard library and is loaded by
path: the lab must not import the collection as a package (it runs from a plain checkout).
"""

from __future__ import annotations

import importlib.util
import os
import re

RUNNER_CONTRACT_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugins", "plugin_utils", "_runner.py"
)


def _load():
    spec = importlib.util.spec_from_file_location("hybridmail_lab_runner_contract", RUNNER_CONTRACT_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


contract = _load()

_HEADER_RE = re.compile(r"\A\$" + contract.REQUEST_VARIABLE + r" = '([A-Za-z0-9+/=]*)'\r?\n")


def split_script(script: str):
    """Inverse of compose_script: (request_base64, runner_text), or None when the header is absent."""
    match = _HEADER_RE.match(script)
    if match is None:
        return None
    return match.group(1), script[match.end():]


def refusal_line(reason: str, detail: str) -> str:
    return "%s%s:%s" % (contract.REFUSED_PREFIX, reason, detail)


def result_line(response: dict) -> str:
    return contract.RESULT_PREFIX + contract.encode_json(response)


def canonical(value) -> str:
    """The canonical string of a converted value, as runner.ps1 computes it for guards
    (docs/wire-contract.md, "Guards")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "\n".join(canonical(item) for item in value)
    return str(value)


def canonical_rows(objects, properties) -> list:
    """Sorted canonical rows of objects over properties: what a guard compares."""
    return sorted("\x1f".join(canonical(obj.get(name)) for name in properties) for obj in objects)

"""The collection's wire contract module (plugins/plugin_utils/_runner.py), loaded by path.

The lab must not import the collection as a package (it runs from a plain checkout), and the
contract module is pure standard library, so loading the file directly is safe.
"""

from __future__ import annotations

import importlib.util
import os

RUNNER_CONTRACT_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "plugins", "plugin_utils", "_runner.py"
)


def _load():
    spec = importlib.util.spec_from_file_location("hybridmail_lab_exchange_contract", RUNNER_CONTRACT_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner_contract = _load()

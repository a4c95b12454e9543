"""The collection's wire contract module (plugins/plugin_utils/_runner.py) and the lab's side of it.

Loaded once, by path, in tests/lab/wire.py; runner_contract is that module.
"""

from __future__ import annotations

from tests.lab.wire import contract as runner_contract  # noqa: F401 (re-exported)

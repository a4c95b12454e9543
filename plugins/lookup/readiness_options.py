# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: readiness_options
short_description: Check the hybrid_readiness role's options on the controller, before any server is contacted
version_added: 0.2.0
author:
  - hybridmail.exchange contributors (@hybridmail)
description:
  - Checks the C(hybrid_readiness_*) variables against the role's C(meta/argument_specs.yml) (types, choices),
    then what the role's modules would refuse before a round trip - expiry thresholds that contradict each
    other, exemptions without a reason or with an unknown finding id, thumbprints that are not thumbprints,
    C(min_key_size) and C(event_lookback_days) out of range, C(exchange_session=e2010), a trust bundle that
    cannot be read.
  - Returns an empty list when every option is right and raises an error naming every wrong one otherwise.
  - The role calls it in the condition of a C(ansible.builtin.meta) task. Ansible evaluates that condition in
    the controller's own process, and an error there stops C(ansible-playbook) with exit code 1 before any
    host task runs. So a wrong option is told apart from a server that is not compliant (exit code 2); see the
    README's "Exit codes".
  - The trust bundle is read here, in the controller's main process, so the worker processes that audit each
    server inherit it parsed.
options:
  required_mode:
    description:
      - Refuse unless C(hybrid_readiness_mode) is this (C(playbooks/hybrid_readiness.yml) only audits).
    type: str
    choices: [audit, enforce]
  refusal:
    description:
      - How the refusal of another mode starts (what only runs here); the mode given and O(advice) follow.
      - Empty says that this run only runs in O(required_mode) mode.
    type: str
    default: ""
  advice:
    description: What the refusal of another mode advises instead.
    type: str
    default: ""
notes:
  - The variables are read as the play sees them (role defaults, play and extra vars); a value that is a template
    is templated, as a task argument would be.
seealso:
  - module: hybridmail.exchange.readiness_check
  - module: hybridmail.exchange.readiness_report
"""

EXAMPLES = r"""
- name: Check the role's options before any server is contacted (a wrong one stops the run, exit code 1)
  ansible.builtin.meta: end_play
  # Never true: the lookup returns [] or raises.
  when: query('hybridmail.exchange.readiness_options') != []
"""

RETURN = r"""
_list:
  description: Always empty; a wrong option raises an error instead.
  type: list
  elements: str
"""

import os

import yaml

from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.lookup import LookupBase

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _args

PREFIX = "hybrid_readiness_"
# This file is <collection>/plugins/lookup/readiness_options.py.
ARGUMENT_SPECS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "roles", "hybrid_readiness", "meta", "argument_specs.yml")


def role_options() -> dict:
    with open(ARGUMENT_SPECS, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["argument_specs"]["main"]["options"]


def problems(values: dict, options: dict, required_mode: str | None = None, refusal: str = "", advice: str = "") -> list:
    """What is wrong with the role's variables (values: {variable: value}), in the words the modules use."""
    mode = values.get(PREFIX + "mode", options[PREFIX + "mode"].get("default"))
    if required_mode and mode != required_mode:
        # First: the mode is what this run refuses, whatever else is wrong with it.
        return [("%s, but hybrid_readiness_mode is '%s' (an extra var, -e, overrides a play's variables). %s" % (
            refusal or "this run only runs in %s mode" % required_mode, mode, advice)).strip()]
    validated = ArgumentSpecValidator(options).validate(values)
    if validated.error_messages:
        return list(validated.error_messages)
    args = {name[len(PREFIX):]: value for name, value in validated.validated_parameters.items()}
    found = []
    checks = (
        ("", lambda: _args.findings_options(args)),
        (PREFIX + "exempt_thumbprints: ", lambda: args["exempt_thumbprints"] and _args.thumbprints(args["exempt_thumbprints"])),
        ("", lambda: _args.check_range("event_lookback_days", args["event_lookback_days"], 0, 365)),
        ("", lambda: _args.check_session(args)),
        # Read here, in the controller's main process: every host's worker inherits the parsed bundle.
        ("", lambda: _args.trust_store(args)),
    )
    for label, check in checks:
        try:
            check()
        except _args.OptionError as exc:
            found.append(label + str(exc))
    # findings_options and trust_store both check min_key_size: say it once.
    return list(dict.fromkeys(found))


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        options = role_options()
        values = {}
        for name in options:
            if name in variables:
                # As a task argument would be: templated when it is a template, text when it is untrusted.
                values[name] = self._templar.template(variables[name])
        found = problems(values, options, self.get_option("required_mode"), self.get_option("refusal"), self.get_option("advice"))
        if found:
            raise AnsibleError("hybridmail.exchange.hybrid_readiness: %s No server was contacted and nothing was changed."
                               % " ".join(text if text.endswith(".") else text + "." for text in (t.strip() for t in found)))
        return []

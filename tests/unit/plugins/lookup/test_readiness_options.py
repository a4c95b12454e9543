"""The role's option check on the controller (plugins/lookup/readiness_options.py): what it refuses and how it says so.

tests/integration/test_bad_input.py and test_exit_codes.py run it through ansible-playbook (exit code 1,
no round trip); these pin its verdicts one option at a time.
"""

from __future__ import annotations

import pytest

from ansible_collections.hybridmail.exchange.plugins.lookup import readiness_options

OPTIONS = readiness_options.role_options()


def problems(**values):
    return readiness_options.problems({"hybrid_readiness_" + name: value for name, value in values.items()}, OPTIONS)


def test_it_reads_the_roles_own_argument_spec():
    assert {"hybrid_readiness_mode", "hybrid_readiness_fail_on", "hybrid_readiness_exemptions"} <= set(OPTIONS)


def test_the_defaults_are_right(tmp_path):
    assert problems(report_dir=str(tmp_path)) == []


@pytest.mark.parametrize("values, message", [
    ({"fail_on": "sometimes"}, "value of hybrid_readiness_fail_on must be one of: critical, warning, never, got: sometimes"),
    ({"expiry_critical_days": 90}, "expiry_critical_days (90) must not exceed expiry_warning_days (60)"),
    ({"exemptions": [{"id": "HM101"}]}, "exemption 1 (HM101) needs a reason"),
    ({"exempt_thumbprints": ["zz"]}, "hybrid_readiness_exempt_thumbprints: 'zz' is not a certificate thumbprint (40 hexadecimal digits)"),
    ({"event_lookback_days": 400}, "event_lookback_days must be between 0 and 365, got 400"),
    ({"min_key_size": 100}, "min_key_size must be between 512 and 16384, got 100"),
    ({"exchange_session": "e2010"}, "exchange_session=e2010 is not supported"),
    ({"trust_bundle": "/nonexistent/roots.pem"}, "cannot read trust bundle /nonexistent/roots.pem: No such file or directory"),
])
def test_each_wrong_option_is_named_in_the_words_of_the_module_that_would_refuse_it(values, message):
    found = problems(**values)
    assert len(found) == 1 and message in found[0], found


def test_every_wrong_option_is_named_not_only_the_first():
    found = problems(event_lookback_days=400, exchange_session="e2010")
    assert len(found) == 2 and "event_lookback_days" in found[0] and "e2010" in found[1], found


def test_a_refused_mode_is_said_first_whatever_else_is_wrong():
    found = readiness_options.problems({"hybrid_readiness_mode": "enforce", "hybrid_readiness_fail_on": "sometimes"}, OPTIONS,
                                       required_mode="audit", refusal="this playbook only audits", advice="Use the other one.")
    assert found == ["this playbook only audits, but hybrid_readiness_mode is 'enforce' (an extra var, -e, overrides a "
                     "play's variables). Use the other one."]


def test_the_mode_required_is_the_default_when_no_variable_sets_it():
    assert readiness_options.problems({}, OPTIONS, required_mode="audit") == []
    assert readiness_options.problems({}, OPTIONS, required_mode="enforce")[0].startswith(
        "this run only runs in enforce mode, but hybrid_readiness_mode is 'audit'")

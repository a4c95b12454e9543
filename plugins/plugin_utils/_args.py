# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Options shared by the modules (doc fragments trust and session), checked before any round trip."""

from __future__ import annotations

import re

from . import _compliance, _findings, _model, _trust

# The exchange_session choices: the runner's loads, and e2010, accepted only to be refused with its reason
# (check_session) rather than with "must be one of".
SESSION_CHOICES = ("auto", "none", "snapin", "e2010", "remote_exchange")

COMMON_SPEC = dict(
    trust_bundle=dict(type="path"),
    min_key_size=dict(type="int", default=2048),
    exchange_session=dict(type="str", default="auto", choices=list(SESSION_CHOICES)),
)
# Options of the enforcement modules (doc fragment enforce).
ENFORCE_SPEC = dict(COMMON_SPEC, event_lookback_days=dict(type="int", default=0))
# How findings are judged (doc fragment findings): readiness_check and readiness_report.
FINDINGS_SPEC = dict(
    fail_on=dict(type="str", default="critical", choices=list(_compliance.FAIL_ON)),
    expiry_warning_days=dict(type="int", default=60),
    expiry_critical_days=dict(type="int", default=30),
    exemptions=dict(type="list", elements="dict", default=[]),
)
THRESHOLDS = ("expiry_warning_days", "expiry_critical_days", "min_key_size")

_THUMBPRINT_RE = re.compile(r"\A[0-9A-F]{40}\Z")


class OptionError(ValueError):
    """An option value that passed type checks but cannot be right."""


# exchange_session=e2010 is still accepted by the option's choices, so that an older playbook gets this
# message rather than "must be one of": Exchange 2010 is not supported.
E2010_REFUSED = ("exchange_session=e2010 is not supported: Exchange 2010's shell runs Windows PowerShell 2.0, and the "
                 "collection's runner needs PowerShell 3 or later (ConvertFrom-Json, [ordered]); the collection supports "
                 "Exchange 2013 and later. Use auto (or snapin) on those servers.")


def check_session(args) -> None:
    if args.get("exchange_session") == "e2010":
        raise OptionError(E2010_REFUSED)


def check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise OptionError("%s must be between %d and %d, got %d" % (name, low, high, value))


def thumbprints(values) -> list | None:
    """Normalized SHA-1 thumbprints, or None when no filter was given."""
    if values is None:
        return None
    normalized = []
    for value in values:
        thumbprint = _model.normalize_thumbprint(value)
        if not _THUMBPRINT_RE.match(thumbprint):
            raise OptionError("%r is not a certificate thumbprint (40 hexadecimal digits)" % (value,))
        normalized.append(thumbprint)
    if not normalized:
        raise OptionError("thumbprints must not be empty; omit it to select every certificate")
    return list(dict.fromkeys(normalized))


def trust_store(args) -> _trust.TrustStore:
    check_range("min_key_size", args["min_key_size"], 512, 16384)
    try:
        # Empty is the default bundle too: a role or pipeline variable left empty means "not set".
        return _trust.load_trust_bundle(args["trust_bundle"] or None)
    except _trust.TrustBundleError as exc:
        raise OptionError(str(exc)) from None


def findings_options(args) -> tuple:
    """(_findings.Options, validated exemptions) from FINDINGS_SPEC's options and min_key_size."""
    check_range("min_key_size", args["min_key_size"], 512, 16384)
    try:
        return _findings.Options.of({key: args[key] for key in THRESHOLDS}), _compliance.validate_exemptions(args["exemptions"])
    except ValueError as exc:
        raise OptionError(str(exc)) from None

# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Findings: what is wrong with one server's hybrid mail flow certificates, and across a fleet.

Pure functions over the JSON-able facts that `hybridmail.exchange.certificate_info` returns for one
server (plugins/plugin_utils/_facts.py server_facts()), so the role can compute findings from a
registered result and a report can be rebuilt from stored JSON. No Ansible imports, no I/O.

Every check has a stable id (HMnnn) and a slug; _catalogue.CHECKS is the catalogue (docs/findings.md is
its long form). A check yields zero or more findings, one per thing it is about (a certificate, a
connector, a host name, the server): the `subject` of the finding.

Which certificate faces Exchange Online is not decided here: the facts carry the answer the planner
plans with (`exposure`, plugins/plugin_utils/_exposure.py), and whether enforce removes a finding is
the planner's answer too (`enforce.clears`, _autofix.py), so the facts, the plan and the findings agree
by construction. The catalogue is _catalogue.py; fail_on and exemptions are _compliance.py.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from . import _exposure, _model, _trust
from ._catalogue import (
    CATALOGUE, CERTIFICATE_REQUIREMENTS, CONNECTORS_GUIDE, CRITICAL, ECC_OVERRIDE_ADVICE, ENABLE_CERTIFICATE, GET_QUEUE, HC_CERTIFICATE,
    HC_INTERNAL_TRANSPORT, HEALTHCHECKER, IMPORT_CERTIFICATE,
    INFO, KB_2888788, KB_4051498, NEW_CERTIFICATE, SET_HYBRID_CONFIGURATION, SET_RECEIVE_CONNECTOR, SET_SEND_CONNECTOR,
    TLS_CONFIGURATION, WARNING, CAUSES_OF_2004, Finding, jsonable, sort_findings,
)

UTC = datetime.timezone.utc


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    expiry_warning_days: int = 60
    expiry_critical_days: int = 30
    min_key_size: int = 2048
    now: datetime.datetime | None = None  # None: the facts' gathered_at, else the current time

    def __post_init__(self):
        for name in ("expiry_warning_days", "expiry_critical_days", "min_key_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError("%s must be a non-negative integer, got %r" % (name, value))
        if self.expiry_critical_days > self.expiry_warning_days:
            raise ValueError(
                "expiry_critical_days (%d) must not exceed expiry_warning_days (%d)" % (self.expiry_critical_days, self.expiry_warning_days)
            )
        if self.now is not None and (not isinstance(self.now, datetime.datetime) or self.now.tzinfo is None):
            raise ValueError("now must be a timezone-aware datetime")

    @classmethod
    def of(cls, value: Options | Mapping | None) -> Options:
        """Options from a mapping with the field names (role variables), an Options, or None for defaults."""
        if value is None:
            return cls()
        if isinstance(value, Options):
            return value
        if not isinstance(value, Mapping):
            raise ValueError("options must be a mapping, got %s" % type(value).__name__)
        unknown = sorted(set(value) - {"expiry_warning_days", "expiry_critical_days", "min_key_size", "now"})
        if unknown:
            raise ValueError("unknown finding options: %s" % ", ".join(unknown))
        values = {key: item for key, item in value.items() if item is not None}
        if isinstance(values.get("now"), str):
            parsed = _model.parse_utc(values["now"])
            if parsed is None:
                raise ValueError("now %r is not an ISO 8601 date" % values["now"])
            values["now"] = parsed
        return cls(**values)


# ---------------------------------------------------------------------------------------------
# Reading the facts of one server
# ---------------------------------------------------------------------------------------------

CLOUD_TLS_DOMAIN = "mail.protection.outlook.com"
# HealthChecker's colours for Get-ExchangeCertificate Status (exchange-facts.md).
STATUS_RED = frozenset({"revoked", "dateinvalid", "invalid"})
STATUS_YELLOW = frozenset({"unknown", "untrusted", "revocationcheckfailure", "pendingrequest"})
# Reason codes of a verdict that have a check of their own; the rest make HM103.
_OWN_CHECK_REASONS = frozenset({"self_signed", "expired", "not_yet_valid", "incomplete_chain", "no_private_key", "weak_key", "weak_signature"})
# Untranslated tokens of TLS failures in a queue's LastError.
_TLS_ERROR_TOKENS = ("454 4.7.0", "4.7.5", "untrustedroot", "unknowncredentials", "nocredentials", "tls", "certificate")

_LABEL_LIMIT = 80


def _lower(value) -> str:
    return str(value or "").strip().rstrip(".").lower()


def _name_key(text) -> str:
    """Issuer/subject text compared as Exchange compares TlsCertificateName: case-insensitive, whole string
    (white space runs collapsed, which only makes hand-typed values compare equal)."""
    return " ".join(str(text or "").split()).casefold()


def status_colour(status) -> str | None:
    """HealthChecker's colour for an Exchange certificate Status: red, yellow, green, or None when unknown."""
    key = _lower(status)
    if not key:
        return None
    if key in STATUS_RED:
        return "red"
    if key in STATUS_YELLOW:
        return "yellow"
    return "green" if key == "valid" else "yellow"


def _label(cert: Mapping) -> str:
    text = cert.get("friendly_name") or cert.get("subject") or cert.get("thumbprint") or "?"
    text = " ".join(str(text).split())
    return text if len(text) <= _LABEL_LIMIT else text[: _LABEL_LIMIT - 3] + "..."


def ps_literal(text) -> str:
    """text as a PowerShell single-quoted literal: nothing in it expands ($(), backticks, variables).
    PowerShell also ends single-quoted strings at typographic single quotes, so those are doubled too."""
    quoted = "".join(char * 2 if char in "'\u2018\u2019\u201a\u201b" else char for char in str(text))
    return "'%s'" % quoted


def _thumbprint_arg(thumbprint) -> str:
    normalized = _model.normalize_thumbprint(thumbprint)
    return normalized if normalized and all(char in "0123456789ABCDEF" for char in normalized) else "<thumbprint>"


class ServerFacts:
    """One server's facts, with lookups the checks share. What faces Exchange Online is not worked out
    here: the facts carry it (`exposure`, _exposure), as the planner saw it; whether enforce removes a
    finding is the planner's answer too (`enforce.clears`, _autofix)."""

    def __init__(self, facts: Mapping, options: Options):
        if not isinstance(facts, Mapping):
            raise ValueError("facts must be a mapping (certificate_info's result), got %s" % type(facts).__name__)
        self.facts = facts
        self.options = options
        gathered = _model.parse_utc(facts.get("gathered_at"))
        self.now = options.now or gathered or datetime.datetime.now(UTC)
        self.certificates = [cert for cert in facts.get("certificates") or () if isinstance(cert, Mapping)]
        self.by_thumbprint = {_model.normalize_thumbprint(cert.get("thumbprint")): cert for cert in self.certificates}
        self.warnings = [str(warning) for warning in facts.get("warnings") or ()]
        self.hybrid_tls_name = (facts.get("hybrid_configuration") or {}).get("tls_certificate_name")
        self.exposure = _exposure.Exposure.from_facts(facts.get("exposure"))
        # The Get-SendConnector / Get-ReceiveConnector facts of each cloud connector, for its settings.
        self.connector_facts = {(kind, str(c.get("identity") or c.get("name") or "?")): c
                                for kind, key in ((_exposure.SEND, "send_connectors"), (_exposure.RECEIVE, "receive_connectors"))
                                for c in facts.get(key) or () if isinstance(c, Mapping)}
        clears = (facts.get("enforce") or {}).get("clears") or ()
        self.clears = {(str(item[0]), str(item[1])) for item in clears if isinstance(item, (list, tuple)) and len(item) == 2}

    def auto_fix(self, check_id: str, subject: str) -> bool:
        """Whether enforce removes this finding: the planner's answer for these facts (_autofix)."""
        return (check_id, subject) in self.clears

    # -- certificates ---------------------------------------------------------------------------

    @staticmethod
    def thumbprint(cert: Mapping) -> str:
        return _model.normalize_thumbprint(cert.get("thumbprint"))

    @staticmethod
    def codes(cert: Mapping) -> list[str]:
        return [reason.get("code") for reason in (cert.get("verdict") or {}).get("reasons") or () if isinstance(reason, Mapping)]

    @staticmethod
    def trusted(cert: Mapping) -> bool:
        return bool((cert.get("verdict") or {}).get("trusted"))

    @staticmethod
    def trusted_for(cert: Mapping, names: Sequence[str]) -> bool:
        """Exchange Online accepts it for one of names: a trusted verdict and a DNS identifier covering it."""
        return ServerFacts.trusted(cert) and any(
            _model.dns_name_matches(str(domain), name) for domain in cert.get("domains") or () for name in names)

    @staticmethod
    def usable(cert: Mapping) -> bool:
        """Transport can present it: enabled for SMTP, and the private key is not known to be missing."""
        return "SMTP" in (cert.get("services") or ()) and cert.get("has_private_key") is not False

    @staticmethod
    def lacks_only_intermediates(cert: Mapping) -> bool:
        """Exchange Online would trust it but for intermediates the server does not hold (incomplete_chain
        is its verdict's only reason): importing them is the fix, not another certificate."""
        return ServerFacts.codes(cert) == ["incomplete_chain"]

    @staticmethod
    def issuer_hint(certs: Sequence[Mapping]) -> str:
        """For certificates whose only reason is unknown_root at a certificate that is not self-signed: its
        issuer is on neither the server nor the trust bundle. A bundle of roots only (certifi's) cannot tell
        a missing public intermediate from an untrusted CA, so the advice names both."""
        issuers = list(dict.fromkeys(str((cert.get("verdict") or {}).get("missing_issuer")) for cert in certs
                                     if ServerFacts.codes(cert) == ["unknown_root"] and (cert.get("verdict") or {}).get("missing_issuer")))
        if not issuers:
            return ""
        return (" The chain stops short of a root: the server holds no certificate for the issuer %s. If that is an intermediate "
                "of a public CA (a trust bundle of roots only, such as the default one, cannot tell), the certificate is fine: "
                "import that intermediate into this server's Intermediate Certification Authorities store (Import-Certificate "
                "-FilePath <intermediate>.cer -CertStoreLocation Cert:\\LocalMachine\\CA) and restart MSExchangeTransport; a trust "
                "bundle with the public intermediates makes this audit name it." % " and ".join(issuers))

    @staticmethod
    def missing_intermediates(certs: Sequence[Mapping]) -> list[tuple[str, str]]:
        """(subject, thumbprint) of the intermediates these certificates' verdicts say the server lacks."""
        return [(str(link.get("subject")), str(link.get("thumbprint"))) for cert in certs
                for link in (cert.get("verdict") or {}).get("missing_intermediates") or () if isinstance(link, Mapping)]

    def ecc_note(self, cert: Mapping) -> str:
        """What advice to enable cert must add when it has an ECC key and Exchange's ECC support is not known to be on."""
        if cert.get("key_type") != "EC" or (self.facts.get("server") or {}).get("ecc_support") is True:
            return ""
        return " It has an ECC key: Exchange's ECC support must be enabled first, or Enable-ExchangeCertificate fails (HM308)."

    def days_remaining(self, cert: Mapping) -> int | None:
        not_after = _model.parse_utc(cert.get("not_after"))
        if not_after is not None:
            return (not_after - self.now).days
        value = cert.get("days_remaining")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def expired(self, cert: Mapping) -> bool:
        not_after = _model.parse_utc(cert.get("not_after"))
        if not_after is not None:
            return not_after < self.now
        return "expired" in self.codes(cert)

    def not_yet_valid(self, cert: Mapping) -> bool:
        not_before = _model.parse_utc(cert.get("not_before"))
        if not_before is not None:
            return not_before > self.now
        return "not_yet_valid" in self.codes(cert)

    def renewal_of(self, cert: Mapping) -> Mapping | None:
        """A renewal of cert on this server: same subject, valid longer, not expired, with its private key
        (the one valid longest)."""
        key, not_after = _name_key(cert.get("subject")), _model.parse_utc(cert.get("not_after"))
        if not key or not_after is None:
            return None
        renewals = [other for other in self.certificates
                    if other is not cert and _name_key(other.get("subject")) == key and other.get("has_private_key") is not False
                    and not self.expired(other) and (_model.parse_utc(other.get("not_after")) or not_after) > not_after]
        return max(renewals, key=lambda other: (other.get("not_after") or "", self.thumbprint(other)), default=None)

    def is_facing(self, cert: Mapping) -> bool:
        return self.exposure.faces_exchange_online(self.thumbprint(cert))

    def in_use(self, cert: Mapping) -> bool:
        """Enabled for a service, the internal transport or Auth certificate, or named by a TlsCertificateName."""
        return bool(cert.get("services")) or bool(cert.get("is_internal_transport")) or bool(cert.get("is_auth_certificate")) \
            or self.thumbprint(cert) in self.exposure.referenced

    def tier(self, cert: Mapping) -> str:
        """critical when it faces Exchange Online, warning when in use, info otherwise."""
        if self.is_facing(cert):
            return CRITICAL
        return WARNING if self.in_use(cert) else INFO

    def certificate_evidence(self, cert: Mapping) -> dict:
        verdict = cert.get("verdict") or {}
        return {
            "thumbprint": self.thumbprint(cert),
            "friendly_name": cert.get("friendly_name"),
            "subject": cert.get("subject"),
            "issuer": cert.get("issuer"),
            "domains": list(cert.get("domains") or ()),
            "services": list(cert.get("services") or ()),
            "not_after": cert.get("not_after"),
            "days_remaining": self.days_remaining(cert),
            "trusted": bool(verdict.get("trusted")),
            "reasons": [dict(reason) for reason in verdict.get("reasons") or () if isinstance(reason, Mapping)],
            "exchange_status": cert.get("status"),
            "healthchecker_status_colour": status_colour(cert.get("status")),
            "root_ca_type": cert.get("root_ca_type"),
            "is_self_signed": cert.get("is_self_signed"),
            "has_private_key": cert.get("has_private_key"),
            "is_internal_transport": bool(cert.get("is_internal_transport")),
            "faces_exchange_online_via": [c.identity for c in self.exposure.facing(self.thumbprint(cert))],
        }

    # -- connectors (as _exposure saw them) -------------------------------------------------------

    def presented(self, connector: _exposure.Connector) -> list[Mapping]:
        return [self.by_thumbprint[t] for t in connector.presents if t in self.by_thumbprint]

    def selected(self, connector: _exposure.Connector) -> Mapping | None:
        """The certificate a resolved TlsCertificateName selects."""
        return self.by_thumbprint.get(connector.selected) if connector.selected else None

    def works(self, connector: _exposure.Connector) -> bool:
        """Whether the connector can present a trusted certificate: a trusted candidate, or a selected one that
        is trusted for a name Exchange Online checks, enabled for SMTP and has its private key."""
        if connector.pin == _exposure.RESOLVED:
            target = self.selected(connector)
            return target is not None and self.usable(target) and self.trusted_for(target, connector.exchange_online_names)
        return any(self.trusted(cert) for cert in self.presented(connector))

    def usable_trusted(self, names: Sequence[str], excluding: str | None = None) -> list[Mapping]:
        return [cert for cert in self.certificates
                if self.thumbprint(cert) != excluding and self.usable(cert) and self.trusted_for(cert, names)]

    def trusted_elsewhere(self, cert: Mapping) -> bool:
        """Whether every connector presenting cert has another trusted SMTP certificate for its names (advice only)."""
        presenting = self.exposure.facing(self.thumbprint(cert))
        return bool(presenting) and all(self.usable_trusted(c.exchange_online_names, excluding=self.thumbprint(cert)) for c in presenting)

    @staticmethod
    def connector_ref(connector: _exposure.Connector) -> dict:
        return {"kind": connector.kind, "identity": connector.identity}


def _finding(check_id: str, severity: str, title: str, subject: str, evidence: Mapping, remediation: str,
             references: Sequence[str] | None = None) -> Finding:
    check = CATALOGUE[check_id]
    return Finding(
        id=check_id,
        severity=severity,
        title=title,
        subject=subject,
        evidence=jsonable(evidence),
        remediation=remediation,
        references=tuple(references if references is not None else check.references),
    )


def _set_connector_command(kind: str, identity: str, thumbprint: str) -> str:
    cmdlet = "Set-SendConnector" if kind == "send" else "Set-ReceiveConnector"
    return ("$c = Get-ExchangeCertificate -Thumbprint %s; %s -Identity %s -TlsCertificateName \"<I>$($c.Issuer)<S>$($c.Subject)\""
            % (_thumbprint_arg(thumbprint), cmdlet, ps_literal(identity)))


# ---------------------------------------------------------------------------------------------
# Checks: the certificate Exchange Online sees
# ---------------------------------------------------------------------------------------------


def _unpinned_by_name(server: ServerFacts) -> dict[str, list]:
    """selection name -> the enabled cloud connectors that select certificates by it (no TlsCertificateName)."""
    names: dict[str, list] = {}
    for connector in server.exposure.active:
        if connector.pin == _exposure.EMPTY:
            names.setdefault(connector.selection_name, []).append(connector)
    return names


def _check_kb2888788(server: ServerFacts) -> list[Finding]:
    findings = []
    untrusted_root_events = sum(1 for event in server.facts.get("events") or () if isinstance(event, Mapping) and event.get("untrusted_root"))
    for name, connectors in sorted(_unpinned_by_name(server).items()):
        candidates = server.presented(connectors[0])  # the same name selects the same certificates
        trusted = [cert for cert in candidates if server.trusted(cert)]
        untrusted = [cert for cert in candidates if not server.trusted(cert)]
        if not trusted or not untrusted:
            continue
        best = max(trusted, key=lambda cert: (cert.get("not_after") or "", server.thumbprint(cert)))
        commands = [_set_connector_command(c.kind, c.identity, server.thumbprint(best)) for c in connectors]
        findings.append(_finding(
            "HM101", CRITICAL,
            "KB 2888788: %d SMTP certificates match %s, %d of them not trusted by Exchange Online, and no TlsCertificateName pins the trusted one"
            % (len(candidates), name, len(untrusted)),
            name,
            {
                "fqdn": name,
                "connectors": [server.connector_ref(c) for c in connectors],
                "trusted_certificates": [server.certificate_evidence(cert) for cert in trusted],
                "untrusted_certificates": [server.certificate_evidence(cert) for cert in untrusted],
                "untrusted_root_events": untrusted_root_events,
            },
            "Transport picks one of these certificates for %s without a documented tie-break; when it picks an untrusted one, "
            "Exchange Online answers 454 4.7.0 UntrustedRoot and mail to Exchange Online queues (KB 2888788). Pin the trusted "
            "certificate on the connector(s): %s. Or, as the KB describes, stop the untrusted certificate(s) from serving SMTP "
            "(Enable-ExchangeCertificate documents services as additive, so verify with Get-ExchangeCertificate -Thumbprint <x> "
            "| fl Services afterwards; never touch the internal transport certificate). Then restart MSExchangeTransport and "
            "watch the queue drain. See %s" % (name, "; ".join(commands), KB_2888788),
        ))
    return findings


def _check_no_trusted(server: ServerFacts) -> list[Finding]:
    findings = []
    by_names: dict[tuple, list] = {}
    for connector in server.exposure.active:
        if not server.works(connector):
            by_names.setdefault(connector.exchange_online_names, []).append(connector)
    for names, connectors in sorted(by_names.items()):
        if server.usable_trusted(names):
            continue  # re-pinning fixes it: the connector findings say how
        name = names[0]
        trusted_unusable = [cert for cert in server.certificates if server.trusted_for(cert, names)]
        smtp_candidates = [cert for cert in server.certificates if server.usable(cert) and any(
            _model.dns_name_matches(str(domain), n) for domain in cert.get("domains") or () for n in names)]
        # A certificate for the name that only lacks its intermediates on this server: import them, do not buy another.
        chain_only = [cert for cert in server.certificates if cert.get("has_private_key") is not False
                      and server.lacks_only_intermediates(cert)
                      and any(_model.dns_name_matches(str(domain), n) for domain in cert.get("domains") or () for n in names)]
        hint = ""
        if trusted_unusable:
            hint = (" A trusted certificate for it exists but is not enabled for SMTP or lacks its private key (%s): enable SMTP on it "
                    "with Enable-ExchangeCertificate -Thumbprint <x> -Services SMTP (this prompts to replace the default SMTP "
                    "certificate; answer no, or restore the internal transport certificate afterwards)."
                    % ", ".join(server.thumbprint(cert) for cert in trusted_unusable))
            hint += "".join(dict.fromkeys(server.ecc_note(cert) for cert in trusted_unusable))
        findings.append(_finding(
            "HM102", CRITICAL,
            "No SMTP certificate trusted by Exchange Online covers %s" % " or ".join(names),
            name,
            {
                "fqdn": name,
                "exchange_online_names": list(names),
                "connectors": [server.connector_ref(c) for c in connectors],
                "trusted_but_not_usable": [server.certificate_evidence(cert) for cert in trusted_unusable],
                "smtp_candidates": [server.certificate_evidence(cert) for cert in smtp_candidates],
            },
            _chain_only_advice(server, chain_only, name) + hint + " See %s" % CERTIFICATE_REQUIREMENTS if chain_only else
            "Exchange Online accepts only a certificate from a CA of the Microsoft Trusted Root Program that covers %s, is valid, "
            "and is sent with its full chain. Obtain one (New-ExchangeCertificate -GenerateRequest, or your CA's process), "
            "install it with Import-ExchangeCertificate, enable it for SMTP and pin it on the cloud connectors "
            "(TlsCertificateName).%s%s See %s" % (name, hint, server.issuer_hint(smtp_candidates), CERTIFICATE_REQUIREMENTS),
        ))
    return findings


def _chain_only_advice(server: ServerFacts, certs: Sequence[Mapping], name: str) -> str:
    """The advice when the certificate(s) for name chain to a trusted root but the server lacks an intermediate."""
    unbound = [server.thumbprint(cert) for cert in certs if not server.usable(cert)]
    return ("%s for %s chain%s to a root Exchange Online trusts, but only through intermediates this server does not hold, "
            "and Exchange Online does not fetch missing intermediates. %s%s" % (
                ", ".join("%s (%s)" % (_label(cert), server.thumbprint(cert)) for cert in certs), name, "" if len(certs) > 1 else "s",
                _trust.import_intermediates_advice(server.missing_intermediates(certs)),
                " Then enable SMTP on %s and pin it on the cloud connectors (TlsCertificateName)." % " or ".join(unbound) if unbound else ""))


def _exo_certificate_remediation(server: ServerFacts, cert: Mapping, problem: str) -> str:
    if server.trusted_elsewhere(cert):
        text = ("%s A trusted SMTP certificate for the same name is on the server: pin it on the connector(s) "
                "(TlsCertificateName) or stop this one from serving SMTP, as KB 2888788 describes." % problem)
    else:
        text = ("%s Replace it with a certificate from a CA of the Microsoft Trusted Root Program that covers the hybrid "
                "FQDN, enable it for SMTP and pin it on the cloud connectors.%s" % (problem, server.issuer_hint([cert])))
    return text + " See %s" % CERTIFICATE_REQUIREMENTS


def _check_exo_certificates(server: ServerFacts) -> list[Finding]:
    findings = []
    for cert in server.certificates:
        if not server.is_facing(cert):
            continue
        thumbprint, label = server.thumbprint(cert), _label(cert)
        codes = server.codes(cert)
        evidence = server.certificate_evidence(cert)
        self_signed = "self_signed" in codes or cert.get("is_self_signed") is True
        other = [code for code in codes if code not in _OWN_CHECK_REASONS and not (self_signed and code == "unknown_root")]
        if other:
            text = _exo_certificate_remediation(server, cert, "Exchange Online refuses this certificate (%s)." % ", ".join(other))
            findings.append(_finding("HM103", CRITICAL, "Certificate %s (%s) faces Exchange Online but is not trusted: %s"
                                     % (label, thumbprint, ", ".join(other)), thumbprint, evidence, text))
        if server.expired(cert) or server.not_yet_valid(cert) or {"expired", "not_yet_valid"} & set(codes):
            state = "not yet valid" if server.not_yet_valid(cert) and not server.expired(cert) else "expired"
            text = _exo_certificate_remediation(server, cert, "The certificate is %s (NotAfter %s)." % (state, cert.get("not_after")))
            findings.append(_finding("HM104", CRITICAL, "Certificate %s (%s) faces Exchange Online and is %s" % (label, thumbprint, state),
                                     thumbprint, evidence, text, (CERTIFICATE_REQUIREMENTS, HC_CERTIFICATE)))
        if self_signed:
            text = _exo_certificate_remediation(server, cert, "The certificate is self-signed.")
            findings.append(_finding("HM105", CRITICAL, "Self-signed certificate %s (%s) faces Exchange Online" % (label, thumbprint),
                                     thumbprint, evidence, text))
    return findings


# ---------------------------------------------------------------------------------------------
# Checks: cloud connectors
# ---------------------------------------------------------------------------------------------


def _check_connectors(server: ServerFacts) -> list[Finding]:
    findings = []
    for connector in server.exposure.connectors:
        base = dict(server.connector_ref(connector), fqdn=connector.selection_name,
                    verified_name=(connector.exchange_online_names or (connector.selection_name,))[0],
                    exchange_online_names=list(connector.exchange_online_names), tls_certificate_name=connector.tls_certificate_name)
        if not connector.enabled:
            findings.append(_finding(
                "HM207", WARNING, "Cloud %s connector %s is disabled" % (connector.kind, connector.identity), connector.identity, base,
                "A %s connector set up for Exchange Online is disabled; mail to or from Exchange Online takes another route or "
                "none. Enable it or remove it, and re-run the Hybrid Configuration Wizard if the hybrid setup changed. See %s"
                % (connector.kind, CONNECTORS_GUIDE)))
            continue
        findings += _pin_findings(server, connector, base)
        findings += _hybrid_name_findings(server, connector, base)
        if connector.kind == _exposure.SEND:
            findings += _send_connector_settings(server.connector_facts.get((connector.kind, connector.identity)) or {},
                                                 connector.identity, base)
    return findings


def _pin_findings(server: ServerFacts, connector: _exposure.Connector, base: Mapping) -> list[Finding]:
    """HM201-HM205: what the connector's TlsCertificateName selects, and whether that can work."""
    kind, identity, names = connector.kind, connector.identity, connector.exchange_online_names
    set_cmdlet_link = SET_SEND_CONNECTOR if kind == _exposure.SEND else SET_RECEIVE_CONNECTOR
    alternatives = server.usable_trusted(names)
    pin_advice = ("Pin the trusted certificate: %s." % _set_connector_command(kind, identity, server.thumbprint(alternatives[0]))
                  if alternatives else
                  "No trusted SMTP certificate for %s is on the server yet (see HM102); install one, then pin it." % " or ".join(names))
    pin_advice += _where_to_pin(server, connector)
    if connector.pin == _exposure.EMPTY:
        return [_finding(
            "HM201", WARNING, "Cloud %s connector %s has no TlsCertificateName" % (kind, identity), identity,
            dict(base, candidates=list(connector.presents)),
            "Without TlsCertificateName transport picks any SMTP certificate matching %s, which is how KB 2888788 happens. %s "
            "See %s" % (connector.selection_name, pin_advice, set_cmdlet_link))]
    if connector.pin == _exposure.MALFORMED:
        return [_finding(
            "HM202", CRITICAL, "Cloud %s connector %s has a malformed TlsCertificateName (%s)" % (kind, identity, connector.pin_problem),
            identity, dict(base, problem=connector.pin_problem),
            "TlsCertificateName must read <I>issuer<S>subject, built from the certificate itself. %s See %s" % (pin_advice, set_cmdlet_link))]
    if connector.pin == _exposure.NOT_FOUND:
        return [_finding(
            "HM203", CRITICAL, "Cloud %s connector %s names a certificate that is not on this server" % (kind, identity), identity, base,
            "Transport fails with 454 4.7.5 (the certificate specified in TlsCertificateName could not be found). Install the "
            "named certificate on this server (with its private key, enabled for SMTP) or point the connector at one that is. "
            "%s See %s" % (pin_advice, set_cmdlet_link))]
    target = server.selected(connector)
    if target is None:
        return []
    findings = []
    target_tp = server.thumbprint(target)
    if not server.trusted_for(target, names):
        others = server.usable_trusted(names, excluding=target_tp)
        why = ", ".join(server.codes(target)) if not server.trusted(target) else "it does not cover %s" % " or ".join(names)
        findings.append(_finding(
            "HM204", CRITICAL,
            "Cloud %s connector %s selects certificate %s (%s), which Exchange Online does not accept: %s"
            % (kind, identity, _label(target), target_tp, why or "untrusted"), identity,
            dict(base, certificate=server.certificate_evidence(target)),
            "The TlsCertificateName selects a certificate Exchange Online refuses. %s See %s"
            % (("Pin the trusted certificate: %s." % _set_connector_command(kind, identity, server.thumbprint(others[0])))
               if others else _chain_only_advice(server, [target], " or ".join(names)) if server.lacks_only_intermediates(target)
               else "Install a trusted certificate for %s and pin it.%s" % (" or ".join(names), server.issuer_hint([target])),
               CERTIFICATE_REQUIREMENTS)))
    if "SMTP" not in (target.get("services") or ()):
        findings.append(_finding(
            "HM205", CRITICAL,
            "Cloud %s connector %s selects certificate %s (%s), which is not enabled for SMTP" % (kind, identity, _label(target), target_tp),
            identity, dict(base, certificate=server.certificate_evidence(target)),
            "TLS fails with UnknownCredentials (KB 4051498). Enable SMTP on the selected certificate "
            "(Enable-ExchangeCertificate -Thumbprint %s -Services SMTP; it prompts to replace the default SMTP "
            "certificate: answer no) or pin a certificate that is.%s See %s" % (_thumbprint_arg(target_tp), server.ecc_note(target), KB_4051498)))
    return findings


def _where_to_pin(server: ServerFacts, connector: _exposure.Connector) -> str:
    """What the pin advice must add for a connector this server does not own alone."""
    if connector.kind == _exposure.SEND and (server.facts.get("server") or {}).get("is_edge"):
        # A subscribed Edge's send connectors are the organisation's, replicated by EdgeSync and locked
        # there (Microsoft Learn, "Edge Subscriptions"): the change is made on a Mailbox server.
        return (" EdgeSync replicates this connector to the Edge Transport server: run the command on a Mailbox server, "
                "then Start-EdgeSynchronization.")
    if connector.kind == _exposure.SEND and connector.shared_with:
        return (" The connector is the organisation's: %s send through it too, and a new TlsCertificateName applies to them "
                "at once. Change it only once each of them holds that certificate with its private key, enabled for SMTP "
                "(playbooks/renew.yml does it in that order); if they hold the certificate it names now, install that one on "
                "this server instead (Import-ExchangeCertificate)." % ", ".join(connector.shared_with))
    return ""


def _hybrid_name_findings(server: ServerFacts, connector: _exposure.Connector, base: Mapping) -> list[Finding]:
    """HM206: the connector and Get-HybridConfiguration name different certificates."""
    hybrid_name = _model.parse_tls_certificate_name(server.hybrid_tls_name)
    connector_name = _model.parse_tls_certificate_name(connector.tls_certificate_name)
    if connector_name is None or hybrid_name is None or (
            (_name_key(connector_name.issuer), _name_key(connector_name.subject)) == (_name_key(hybrid_name.issuer), _name_key(hybrid_name.subject))):
        return []
    return [_finding(
        "HM206", WARNING, "Cloud %s connector %s names another certificate than Get-HybridConfiguration" % (connector.kind, connector.identity),
        connector.identity, dict(base, hybrid_configuration_tls_certificate_name=server.hybrid_tls_name),
        "The connector and the hybrid configuration disagree on the hybrid certificate; the next Hybrid Configuration "
        "Wizard run rewrites the connector from the hybrid configuration. Decide which certificate is right, then run the "
        "wizard (or Set-HybridConfiguration -TlsCertificateName and the connector alike). See %s" % SET_HYBRID_CONFIGURATION)]


def _send_connector_settings(connector: Mapping, identity: str, base: Mapping) -> list[Finding]:
    findings = []
    hcw = "The Hybrid Configuration Wizard sets it; re-run the wizard or use Set-SendConnector -Identity %s %s. See %s"
    if connector.get("require_tls") is not True:
        findings.append(_finding(
            "HM211", WARNING, "Cloud send connector %s does not require TLS" % identity, identity,
            dict(base, require_tls=connector.get("require_tls")),
            "Without RequireTLS mail to Exchange Online may leave unencrypted and unauthenticated. " + hcw
            % (ps_literal(identity), "-RequireTLS $true", SET_SEND_CONNECTOR)))
    level = connector.get("tls_auth_level")
    if _lower(level) != "domainvalidation":
        findings.append(_finding(
            "HM212", WARNING, "Cloud send connector %s has TlsAuthLevel %s, not DomainValidation" % (identity, level or "(empty)"), identity,
            dict(base, tls_auth_level=level),
            "DomainValidation makes transport check that the Exchange Online certificate is for mail.protection.outlook.com. "
            + hcw % (ps_literal(identity), "-TlsAuthLevel DomainValidation -TlsDomain mail.protection.outlook.com", SET_SEND_CONNECTOR)))
    elif _lower(connector.get("tls_domain")) != CLOUD_TLS_DOMAIN:
        findings.append(_finding(
            "HM213", WARNING, "Cloud send connector %s has TlsDomain %s, not %s" % (identity, connector.get("tls_domain") or "(empty)", CLOUD_TLS_DOMAIN),
            identity, dict(base, tls_domain=connector.get("tls_domain")),
            "With DomainValidation the TlsDomain must be %s. " % CLOUD_TLS_DOMAIN
            + hcw % (ps_literal(identity), "-TlsDomain mail.protection.outlook.com", SET_SEND_CONNECTOR)))
    if connector.get("cloud_services_mail_enabled") is not True:
        findings.append(_finding(
            "HM214", WARNING, "Cloud send connector %s has CloudServicesMailEnabled off" % identity, identity,
            dict(base, cloud_services_mail_enabled=connector.get("cloud_services_mail_enabled")),
            "Without CloudServicesMailEnabled Exchange strips the organization headers, so Exchange Online cannot tell the "
            "mail comes from your organization. " + hcw % (ps_literal(identity), "-CloudServicesMailEnabled $true", SET_SEND_CONNECTOR)))
    return findings


# ---------------------------------------------------------------------------------------------
# Checks: every certificate
# ---------------------------------------------------------------------------------------------


def _check_certificates(server: ServerFacts) -> list[Finding]:
    findings = []
    for cert in server.certificates:
        for phase in (_lifetime_findings, _key_findings, _private_key_findings, _chain_findings, _exchange_status_findings,
                      _ecc_findings):
            findings += phase(server, cert)
    return findings


def _lifetime_findings(server: ServerFacts, cert: Mapping) -> list[Finding]:
    """HM301 (expires soon) and HM302 (expired, not facing Exchange Online). A renewal already on the
    server (same subject, valid longer, with its key) turns "renew it" into "move to the renewal and
    retire this one", a warning: the work left is routine, and no certificate is missing."""
    options, thumbprint, label = server.options, server.thumbprint(cert), _label(cert)
    days, expired = server.days_remaining(cert), server.expired(cert)
    in_use = server.is_facing(cert) or server.in_use(cert)
    renewal = server.renewal_of(cert)
    evidence = dict(server.certificate_evidence(cert), renewal=server.thumbprint(renewal) if renewal else None)
    retire = ("Renewal %s is already on the server: enable it for the services this one has (%s), re-pin TlsCertificateName "
              "on the cloud connectors if issuer or subject changed, then retire this one (hybridmail.exchange.exchange_certificate "
              "state=retired; playbooks/renew.yml does all of it across servers). See %s"
              % (server.thumbprint(renewal), ", ".join(cert.get("services") or ()) or "none", NEW_CERTIFICATE)) if renewal else None
    if days is not None and not expired and days < options.expiry_warning_days:
        if not in_use:
            severity = INFO
        elif renewal is not None:
            severity = WARNING
        else:
            severity = CRITICAL if days < options.expiry_critical_days else WARNING
        return [_finding(
            "HM301", severity, "Certificate %s (%s) expires in %d days%s" % (label, thumbprint, days, "; a renewal is installed" if renewal else ""),
            thumbprint, dict(evidence, warning_days=options.expiry_warning_days, critical_days=options.expiry_critical_days),
            retire or "Renew it before %s: for a CA certificate request a renewal (New-ExchangeCertificate -GenerateRequest), import it "
            "with Import-ExchangeCertificate, enable the same services, re-pin TlsCertificateName on the cloud connectors if "
            "issuer or subject changed, then remove the old one. See %s" % (cert.get("not_after"), NEW_CERTIFICATE))]
    if expired and not server.is_facing(cert) and not cert.get("is_internal_transport"):
        # Still in use, an expired certificate is at least as bad as one about to expire.
        severity = (WARNING if renewal is not None else CRITICAL) if server.in_use(cert) else INFO
        return [_finding(
            "HM302", severity, "Certificate %s (%s) expired on %s" % (label, thumbprint, cert.get("not_after")), thumbprint, evidence,
            retire or "Renew or replace it and move its services to the new certificate; remove it once nothing uses it "
            "(Remove-ExchangeCertificate refuses a certificate a connector still names). See %s" % HC_CERTIFICATE)]
    return []


def _key_findings(server: ServerFacts, cert: Mapping) -> list[Finding]:
    """HM303 (weak key) and HM304 (weak signature)."""
    options, thumbprint, label = server.options, server.thumbprint(cert), _label(cert)
    codes = set(server.codes(cert))
    findings = []
    key_type, key_size = cert.get("key_type"), cert.get("key_size")
    # The verdict judged with certificate_info's min_key_size; options.min_key_size may be stricter.
    if "weak_key" in codes or (isinstance(key_size, int) and _trust.weak_key(key_type, key_size, options.min_key_size)):
        findings.append(_finding(
            "HM303", server.tier(cert), "Certificate %s (%s) has a %s key of %s bits" % (label, thumbprint, key_type, key_size),
            thumbprint, dict(server.certificate_evidence(cert), key_type=key_type, key_size=key_size, min_key_size=options.min_key_size),
            "Re-issue the certificate with an RSA key of at least %d bits (or EC P-256 or larger), then move its services to "
            "the new certificate. See %s" % (options.min_key_size, HC_CERTIFICATE)))
    signature = _lower(cert.get("signature_hash"))
    if "weak_signature" in codes or signature in _trust.WEAK_SIGNATURE_HASHES:
        findings.append(_finding(
            "HM304", server.tier(cert), "Certificate %s (%s) is signed with %s" % (label, thumbprint, (signature or "a weak hash").upper()),
            thumbprint, dict(server.certificate_evidence(cert), signature_hash=cert.get("signature_hash")),
            "Re-issue the certificate with a SHA-256 (or stronger) signature. See %s" % HC_CERTIFICATE))
    return findings


def _private_key_findings(server: ServerFacts, cert: Mapping) -> list[Finding]:
    """HM305: in use, but the server does not hold its private key."""
    thumbprint = server.thumbprint(cert)
    if cert.get("has_private_key") is not False or not (server.is_facing(cert) or server.in_use(cert)):
        return []
    pinned_for_exo = server.is_facing(cert) or thumbprint in server.exposure.referenced
    return [_finding(
        "HM305", CRITICAL if pinned_for_exo else WARNING, "Certificate %s (%s) has no private key on this server" % (_label(cert), thumbprint),
        thumbprint, server.certificate_evidence(cert),
        "The server cannot present a certificate without its private key. Import the certificate with its key (a PFX) "
        "using Import-ExchangeCertificate, or complete the pending request on this server. See %s" % IMPORT_CERTIFICATE)]


def _chain_findings(server: ServerFacts, cert: Mapping) -> list[Finding]:
    """HM306: the server lacks an intermediate the chain needs."""
    if "incomplete_chain" not in server.codes(cert):
        return []
    evidence = server.certificate_evidence(cert)
    reason = next((r.get("message") for r in evidence["reasons"] if r.get("code") == "incomplete_chain"), None)
    return [_finding(
        "HM306", server.tier(cert), "Certificate %s (%s) chains to a trusted root only through intermediates the server lacks"
        % (_label(cert), server.thumbprint(cert)), server.thumbprint(cert), dict(evidence, chain=list(cert.get("chain") or ()), detail=reason),
        "Exchange Online does not fetch missing intermediates. %s See %s"
        % (_trust.import_intermediates_advice(server.missing_intermediates([cert])), CERTIFICATE_REQUIREMENTS))]


def _exchange_status_findings(server: ServerFacts, cert: Mapping) -> list[Finding]:
    """HM307: Get-ExchangeCertificate's own Status, coloured as HealthChecker colours it."""
    colour = status_colour(cert.get("status"))
    if colour not in ("red", "yellow"):
        return []
    status = cert.get("status")
    if _lower(status) == "pendingrequest":
        severity = INFO
    elif colour == "red":
        severity = server.tier(cert)
    else:
        severity = WARNING if server.is_facing(cert) else INFO
    return [_finding(
        "HM307", severity, "Exchange reports certificate %s (%s) as %s" % (_label(cert), server.thumbprint(cert), status),
        server.thumbprint(cert), server.certificate_evidence(cert),
        "Get-ExchangeCertificate reports %s (HealthChecker: %s). Exchange judges with the server's own trust store and "
        "revocation checks; compare with this collection's verdict in the evidence. Revoked, Invalid or DateInvalid "
        "certificates must be replaced; RevocationCheckFailure means the server cannot reach the CRL/OCSP endpoints. See %s"
        % (status, colour, HC_CERTIFICATE))]


def _ecc_findings(server: ServerFacts, cert: Mapping) -> list[Finding]:
    """HM308: an ECC certificate Exchange Online would accept, not yet enabled for SMTP, where Exchange's ECC
    support is not known to be on (the planner refuses to enable it, _plan.ecc_unsupported)."""
    names = server.exposure.exchange_online_names
    state = (server.facts.get("server") or {}).get("ecc_support")
    if (cert.get("key_type") != "EC" or state is True or not names or "SMTP" in (cert.get("services") or ())
            or cert.get("has_private_key") is False or not server.trusted_for(cert, names)):
        return []
    problem = ((server.facts.get("server") or {}).get("ecc_support_reason")
               or "whether Exchange's ECC certificate support is enabled on this server is unknown")
    return [_finding(
        "HM308", WARNING, "ECC certificate %s (%s) for %s cannot be enabled for SMTP until Exchange's ECC support is on"
        % (_label(cert), server.thumbprint(cert), " or ".join(names)), server.thumbprint(cert),
        dict(server.certificate_evidence(cert), key_type=cert.get("key_type"), key_size=cert.get("key_size"), ecc_support=state),
        "The certificate has an ECC key and %s: Enable-ExchangeCertificate fails with KeyAlgorithmUnsupported, and enforce "
        "does not enable it. %s See %s" % (problem, ECC_OVERRIDE_ADVICE, ENABLE_CERTIFICATE))]


def _check_internal_transport(server: ServerFacts) -> list[Finding]:
    thumbprint = _model.normalize_thumbprint(server.facts.get("internal_transport_certificate"))
    if not thumbprint and any(warning.startswith("Get-TransportService") for warning in server.warnings):
        return []  # not read: HM901 says so
    cert = server.by_thumbprint.get(thumbprint) if thumbprint else None
    recreate = ("Create a new one on this server: New-ExchangeCertificate -Server $env:COMPUTERNAME -KeySize 2048 "
                "-PrivateKeyExportable $true -FriendlyName $env:COMPUTERNAME -DomainName $env:COMPUTERNAME -IncludeServerFQDN "
                "-Services SMTP -Force (it becomes the internal transport certificate). Never remove SMTP from the internal "
                "transport certificate. See %s" % HC_INTERNAL_TRANSPORT)
    if cert is None:
        return [_finding(
            "HM311", CRITICAL,
            "Internal transport certificate %s is not on the server" % thumbprint if thumbprint else "No internal transport certificate is set",
            "server", {"internal_transport_certificate": thumbprint or None}, "Internal mail flow with this server breaks. " + recreate)]
    if not server.usable(cert):
        return [_finding(
            "HM313", CRITICAL, "Internal transport certificate %s is not enabled for SMTP%s" % (
                thumbprint, "" if "SMTP" not in (cert.get("services") or ()) else " with its private key"),
            thumbprint, server.certificate_evidence(cert),
            "Internal mail flow with this server breaks. Restore it: Enable-ExchangeCertificate -Thumbprint %s -Services SMTP "
            "-Force (it stays the internal transport certificate), then Get-TransportService | fl InternalTransportCertificateThumbprint. "
            "Never remove SMTP from the internal transport certificate. See %s" % (thumbprint, HC_INTERNAL_TRANSPORT)
            if cert.get("has_private_key") is not False else "Internal mail flow with this server breaks. " + recreate)]
    if server.expired(cert):
        return [_finding(
            "HM312", CRITICAL, "Internal transport certificate %s expired on %s" % (thumbprint, cert.get("not_after")), thumbprint,
            server.certificate_evidence(cert), "Internal mail flow with this server breaks. " + recreate)]
    return []


# ---------------------------------------------------------------------------------------------
# Checks: what mail flow shows
# ---------------------------------------------------------------------------------------------


def _queue_state(server: ServerFacts) -> tuple[bool, bool, Mapping | None]:
    """(stuck, tls_error, queue) of the queue toward Exchange Online."""
    queue = server.facts.get("exchange_online_queue")
    if not isinstance(queue, Mapping):
        return False, False, None
    error = " ".join(str(queue.get("last_error") or "").split()).lower()
    count = queue.get("message_count")
    waiting = isinstance(count, int) and not isinstance(count, bool) and count > 0
    stuck = _lower(queue.get("status")) in ("retry", "suspended") or (waiting and bool(error))
    return stuck, stuck and any(token in error for token in _TLS_ERROR_TOKENS), queue


def _check_queue(server: ServerFacts, findings_so_far: Sequence[Finding]) -> list[Finding]:
    stuck, tls_error, queue = _queue_state(server)
    if not stuck:
        return []
    identity = str(queue.get("identity") or queue.get("next_hop_domain") or "queue")
    # A TLS error is critical, unless it is from the queue's last retry before this run changed the server
    # and the audit finds no cause left (right after a remediation, until the next retry).
    critical = tls_error and not (_retried_before_change(server, queue) and not _causes_of_2004(findings_so_far))
    return [_finding(
        "HM402", CRITICAL if critical else WARNING,
        "Queue %s to Exchange Online is %s with %s message(s)%s" % (
            identity, queue.get("status") or "stuck", queue.get("message_count"), ": TLS refused" if tls_error else ""),
        identity, dict(queue),
        "%sOnce the cause is fixed, run Retry-Queue -Identity %s and check that the queue drains (Get-Queue). See %s"
        % ("The last error is a TLS/certificate error: fix the certificate findings of this server first (KB 2888788). "
           if tls_error else "Look at LastError for the cause (DNS, network, connector). ", ps_literal(identity), GET_QUEUE))]


def _retried_before_change(server: ServerFacts, queue: Mapping | None) -> bool:
    """Whether the queue last tried before this run changed the server (facts["changed_at"], set by the
    enforcement modules), so that its last error describes the state before the change."""
    changed_at = _model.parse_utc(server.facts.get("changed_at"))
    last_retry = _model.parse_utc((queue or {}).get("last_retry_time"))
    return changed_at is not None and (last_retry is None or last_retry <= changed_at)


def _causes_of_2004(findings_so_far: Sequence[Finding]) -> list[str]:
    return sorted({finding.id for finding in findings_so_far if finding.severity == CRITICAL and finding.id in CAUSES_OF_2004})


def _check_events(server: ServerFacts, findings_so_far: Sequence[Finding]) -> list[Finding]:
    events = [event for event in server.facts.get("events") or () if isinstance(event, Mapping) and event.get("untrusted_root")]
    if not events:
        return []
    times = sorted(str(event.get("time")) for event in events if event.get("time"))
    causes = _causes_of_2004(findings_so_far)
    stuck, tls_error, queue = _queue_state(server)
    ongoing = bool(causes) or (stuck and tls_error and not _retried_before_change(server, queue))
    sample = str(events[0].get("message") or "")
    evidence = {
        "count": len(events),
        "newest": times[-1] if times else None,
        "oldest": times[0] if times else None,
        "sample_message": sample if len(sample) <= 1000 else sample[:1000] + "...",
        "causes_found": causes,
        "queue_failing": stuck and tls_error,
    }
    if ongoing and causes:
        return [_finding(
            "HM401", CRITICAL, "%d Event 2004 (454 4.7.0 UntrustedRoot) since %s; its cause is still present (%s)"
            % (len(events), evidence["oldest"], ", ".join(causes)), "server", evidence,
            "Exchange Online refused the certificate transport presented. Fix the findings listed in causes_found (%s; "
            "KB 2888788), then confirm that no new Event 2004 appears and the queue drains. See %s" % (", ".join(causes), KB_2888788))]
    if ongoing:
        # The text says what the evidence holds: no certificate finding explains it, the queue's TLS error does.
        return [_finding(
            "HM401", CRITICAL, "%d Event 2004 (454 4.7.0 UntrustedRoot) since %s; the queue to Exchange Online still fails with "
            "a TLS error, though the audit finds no certificate cause" % (len(events), evidence["oldest"]), "server", evidence,
            "Exchange Online still refuses what transport presents, and no finding of this audit explains it (causes_found is "
            "empty). Look at the certificate the send connector protocol log shows (Set-SendConnector -ProtocolLoggingLevel "
            "Verbose) and at the queue's LastError; a certificate outside the trust bundle's view or a TLS inspection device "
            "in the path can cause it. See %s" % KB_2888788)]
    return [_finding(
        "HM401", INFO,
        "%d Event 2004 (454 4.7.0 UntrustedRoot) between %s and %s; no cause remains and the queue is not failing"
        % (len(events), evidence["oldest"], evidence["newest"]), "server", evidence,
        "The events predate the current state: the audit finds no remaining cause. Watch for new Event 2004 entries; if they "
        "recur, check the certificate the send connector log shows (Set-SendConnector -ProtocolLoggingLevel Verbose). See %s"
        % KB_2888788)]


def _check_tls(server: ServerFacts) -> list[Finding]:
    state = server.facts.get("tls12")
    if not isinstance(state, Mapping):
        return []
    disabled = [key for key in ("Tls12ClientEnabled", "Tls12ServerEnabled") if state.get(key) is False]
    weak_net = state.get("StrongCryptoNet4") is False
    if not disabled and not weak_net:
        return []
    severity = CRITICAL if disabled and server.exposure.active else WARNING
    parts = (["TLS 1.2 %s disabled" % " and ".join(key[5:-7].lower() for key in disabled)] if disabled else []) + (
        [".NET 4 SchUseStrongCrypto off"] if weak_net else [])
    return [_finding(
        "HM403", severity, "%s on this server" % "; ".join(parts), "server", dict(state),
        "Exchange Online accepts only TLS 1.2 or later. Enable TLS 1.2 for the SCHANNEL client and server and set "
        "SchUseStrongCrypto and SystemDefaultTlsVersions for .NET 4, as Microsoft's Exchange TLS guidance describes, then "
        "reboot. See %s" % TLS_CONFIGURATION)]


def _check_version(server: ServerFacts) -> list[Finding]:
    """HM404: the Exchange version is out of support on the day the facts were gathered."""
    version = (server.facts.get("server") or {}).get("version")
    ended = _model.out_of_support(version, server.now.date())
    if ended is None:
        return []
    product, build, end = ended
    return [_finding(
        "HM404", WARNING, "%s (%s) is out of support since %s" % (product, build, end.isoformat()), "server",
        {"admin_display_version": version, "product": product, "build": build, "end_of_support": end.isoformat()},
        "%s has had no security updates since %s. Plan the move to Exchange Server SE (an in-place upgrade from Exchange "
        "2019 CU14 or later; from older versions a migration to new servers). See %s" % (product, end.isoformat(), HEALTHCHECKER))]


def _check_audit(server: ServerFacts) -> list[Finding]:
    if not server.warnings:
        return []
    return [_finding(
        "HM901", WARNING, "%d read(s) of the audit failed; some checks could not run" % len(server.warnings), "server",
        {"warnings": server.warnings},
        "See the messages in the evidence: usually missing Exchange permissions (View-Only Organization Management covers "
        "the reads), an event log the account cannot read, or a cmdlet missing on this Exchange version.")]


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def server_findings(facts: Mapping, options: Options | Mapping | None = None) -> list[Finding]:
    """Every finding for one server, most severe first, from certificate_info's facts of that server.

    The facts must list every certificate of the server (certificate_info without `thumbprints`).
    auto_fix is the planner's answer the facts carry (`enforce.clears`); False where they carry none.
    Raises ValueError for facts that are not a mapping and for invalid options.
    """
    server = ServerFacts(facts, Options.of(options))
    findings: list[Finding] = []
    for check in (_check_kb2888788, _check_no_trusted, _check_exo_certificates, _check_connectors, _check_certificates,
                  _check_internal_transport, _check_tls, _check_version, _check_audit):
        findings += check(server)
    # Mail flow last: whether it is critical depends on a cause found above.
    findings += _check_queue(server, findings)
    findings += _check_events(server, findings)
    return sort_findings(replace(finding, auto_fix=server.auto_fix(finding.id, finding.subject)) for finding in findings)


def hybrid_certificates(facts: Mapping) -> dict[tuple[str, str], dict]:
    """The hybrid certificate(s) of one server: {(issuer key, subject key): {"issuer", "subject"}}.

    The trusted certificates its cloud connectors present; when none is trusted, what they present. An
    untrusted certificate competing with a trusted one (HM101) is that server's problem, not a fleet
    inconsistency."""
    server = ServerFacts(facts, Options())
    presented = {server.thumbprint(cert): cert for connector in server.exposure.active for cert in server.presented(connector)}
    trusted = [cert for cert in presented.values() if server.trusted(cert)]
    result = {}
    for cert in trusted or presented.values():
        key = (_name_key(cert.get("issuer")), _name_key(cert.get("subject")))
        result.setdefault(key, {"issuer": cert.get("issuer"), "subject": cert.get("subject")})
    for connector in server.exposure.active:
        # A connector naming a certificate this server lacks presents nothing (HM203), yet the server is
        # part of the comparison: it holds something else, or nothing, where the others hold the named one.
        named = _model.parse_tls_certificate_name(connector.tls_certificate_name) if connector.pin == _exposure.NOT_FOUND else None
        if named is not None:
            result.setdefault((_name_key(named.issuer), _name_key(named.subject), "not installed"),
                              {"issuer": named.issuer, "subject": named.subject, "installed": False})
            for cert in server.usable_trusted(connector.exchange_online_names):
                result.setdefault((_name_key(cert.get("issuer")), _name_key(cert.get("subject"))),
                                  {"issuer": cert.get("issuer"), "subject": cert.get("subject")})
    return result


def fleet_findings(per_host_certificates: Mapping[str, Mapping]) -> list[Finding]:
    """Findings across servers, from each host's hybrid_certificates() (which a caller collects host by
    host without keeping every host's facts): the hybrid certificate (issuer + subject) must be the same
    on every hybrid transport server. Linear in the number of hosts: each host's certificate set is a
    dictionary key, hosts are grouped under it."""
    groups: dict[frozenset, dict] = {}
    considered = 0
    for host in sorted(per_host_certificates):
        presented = per_host_certificates[host]
        if not presented:
            continue  # not a hybrid transport server, or nothing presentable (its own findings say why)
        considered += 1
        group = groups.setdefault(frozenset(presented), {"certificates": sorted(presented.values(), key=lambda c: (
            _name_key(c["issuer"]), _name_key(c["subject"]))), "hosts": []})
        group["hosts"].append(host)
    if len(groups) < 2:
        return []
    ordered = sorted(groups.values(), key=lambda group: (-len(group["hosts"]), group["hosts"][0]))
    majority = ordered[0]
    deviating = sorted(host for group in ordered[1:] for host in group["hosts"])
    return [_finding(
        "HM501", WARNING,
        "%d hybrid transport servers present %d different hybrid certificates" % (considered, len(groups)), "fleet",
        {"groups": [dict(group, count=len(group["hosts"])) for group in ordered], "majority_hosts": majority["hosts"],
         "deviating_hosts": deviating},
        "The hybrid certificate (same issuer and subject) should be installed, enabled for SMTP and pinned on every hybrid "
        "transport server: Exchange Online's inbound connector and the organization-wide send connector's TlsCertificateName "
        "expect one certificate. Install the majority certificate on %s (or decide which is right) and re-run the Hybrid "
        "Configuration Wizard. See %s" % (", ".join(deviating[:10]) + (" and %d more" % (len(deviating) - 10) if len(deviating) > 10 else ""),
                                          CERTIFICATE_REQUIREMENTS))]

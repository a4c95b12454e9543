# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Findings: what is wrong with one server's hybrid mail flow certificates, and across a fleet.

Pure functions over the JSON-able facts that `hybridmail.exchange.certificate_info` returns for one
server (plugins/plugin_utils/_facts.py server_facts()), so the role can compute findings from a
registered result and a report can be rebuilt from stored JSON. No Ansible imports, no I/O.

Every check has a stable id (HMnnn) and a slug; CHECKS below is the catalogue (docs/findings.md is
its long form). A check yields zero or more findings, one per thing it is about (a certificate, a
connector, a host name, the server): the `subject` of the finding.

Which certificate faces Exchange Online is decided as Exchange decides it (exchange-facts.md):
for each enabled cloud connector of the server (send connectors toward Exchange Online, receive
connectors accepting cloud mail), a TlsCertificateName that resolves selects the matching
certificate with the latest expiry; an empty TlsCertificateName leaves the choice to transport among
the SMTP certificates with a private key that cover the connector's FQDN (the server FQDN when the
connector has none) - the tie-break is undocumented, so every such candidate counts as presented.
The server FQDN that _snapshot adds for a hybrid transport server without a connector presenting it
is not used here: no connector offers a certificate for it.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

from . import _model

UTC = datetime.timezone.utc

CRITICAL, WARNING, INFO = "critical", "warning", "info"
SEVERITIES = (CRITICAL, WARNING, INFO)
_RANK = {CRITICAL: 0, WARNING: 1, INFO: 2}
FAIL_ON = ("critical", "warning", "never")

# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------

KB_2888788 = "https://learn.microsoft.com/en-us/exchange/troubleshoot/send-emails/mail-flow-to-exchange-online-stops"
KB_4051498 = "https://support.microsoft.com/help/4051498"
CERTIFICATE_REQUIREMENTS = "https://learn.microsoft.com/en-us/exchange/certificate-requirements"
CONNECTORS_GUIDE = (
    "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/use-connectors-to-configure-mail-flow/"
    "set-up-connectors-to-route-mail"
)
TLS_CONFIGURATION = (
    "https://learn.microsoft.com/en-us/exchange/plan-and-deploy/post-installation-tasks/security-best-practices/"
    "exchange-tls-configuration"
)
_CMDLETS = "https://learn.microsoft.com/en-us/powershell/module/exchange/"
ENABLE_CERTIFICATE = _CMDLETS + "enable-exchangecertificate"
IMPORT_CERTIFICATE = _CMDLETS + "import-exchangecertificate"
NEW_CERTIFICATE = _CMDLETS + "new-exchangecertificate"
SET_SEND_CONNECTOR = _CMDLETS + "set-sendconnector"
SET_RECEIVE_CONNECTOR = _CMDLETS + "set-receiveconnector"
SET_HYBRID_CONFIGURATION = _CMDLETS + "set-hybridconfiguration"
GET_QUEUE = _CMDLETS + "get-queue"
_HEALTHCHECKER = "https://microsoft.github.io/CSS-Exchange/Diagnostics/HealthChecker/"
HC_CERTIFICATE = _HEALTHCHECKER + "CertificateCheck/"
HC_CLOUD_CONNECTOR = _HEALTHCHECKER + "CloudConnectorCheck/"
HC_EXO_CONNECTOR = _HEALTHCHECKER + "ExoConnectorCheck/"
HC_INTERNAL_TRANSPORT = _HEALTHCHECKER + "InternalTransportCertificateCheck/"
HC_TLS = _HEALTHCHECKER + "TLSConfigurationCheck/"

# ---------------------------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------------------------

# auto_fix values in the catalogue: whether enforce mode (the planner, _plan.py) removes the finding.
# A finding's own auto_fix is the answer for that server. Enforce changes nothing on a server where a
# name Exchange Online checks has no trusted certificate at all, so "yes" and the conditions assume it is
# not blocked that way.
AUTO_FIX_YES = "yes"
AUTO_FIX_NO = "no"
AUTO_FIX_CONDITIONAL = "when a trusted certificate for the name is on the server"
AUTO_FIX_EXPOSED = "when the connector could offer an untrusted certificate and a trusted one is on the server"


@dataclass(frozen=True)
class Check:
    id: str  # stable: HMnnn
    name: str  # stable slug
    severity: str  # the highest severity its findings can have
    title: str
    scope: str  # "server" or "fleet"
    auto_fix: str  # AUTO_FIX_*
    description: str
    references: tuple[str, ...] = ()
    healthchecker: str | None = None  # the HealthChecker check this one covers, when there is one

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "severity": self.severity,
            "title": self.title,
            "scope": self.scope,
            "auto_fix": self.auto_fix,
            "description": self.description,
            "references": list(self.references),
            "healthchecker": self.healthchecker,
        }


def _c(id, name, severity, title, auto_fix, description, references=(), healthchecker=None, scope="server"):
    return Check(id, name, severity, title, scope, auto_fix, description, tuple(references), healthchecker)


CHECKS = (
    # -- the certificate Exchange Online sees --------------------------------------------------
    _c("HM101", "kb2888788-ambiguous-smtp-certificate", CRITICAL,
       "Trusted and untrusted SMTP certificates compete for a hybrid FQDN (KB 2888788)", AUTO_FIX_YES,
       "Two or more SMTP certificates with a private key cover the FQDN a cloud connector presents, at least one "
       "trusted by Exchange Online and at least one not, and the connector's TlsCertificateName is empty, so "
       "transport may pick the untrusted one and Exchange Online refuses the TLS session with 454 4.7.0 UntrustedRoot.",
       (KB_2888788, SET_SEND_CONNECTOR, ENABLE_CERTIFICATE)),
    _c("HM102", "no-trusted-certificate-for-hybrid-fqdn", CRITICAL,
       "No trusted SMTP certificate for a hybrid FQDN", "when a trusted certificate for the name is on the server without SMTP",
       "A cloud connector cannot present a trusted certificate, and no certificate that Exchange Online trusts for "
       "the name it checks (the send connector's FQDN; for receive connectors the hybrid configuration's "
       "OnPremisesSmartHost) is enabled for SMTP with its private key on the server.",
       (CERTIFICATE_REQUIREMENTS, IMPORT_CERTIFICATE, ENABLE_CERTIFICATE)),
    _c("HM103", "exo-certificate-untrusted", CRITICAL,
       "A certificate facing Exchange Online is not trusted", AUTO_FIX_CONDITIONAL,
       "A certificate a cloud connector may present does not chain to a root of the trust bundle, fails path "
       "validation, does not cover the name, lacks serverAuth, or cannot be read. (Self-signed, expired, "
       "incomplete chain, missing key, weak key and weak signature have their own checks.)",
       (CERTIFICATE_REQUIREMENTS, KB_2888788)),
    _c("HM104", "exo-certificate-expired", CRITICAL,
       "A certificate facing Exchange Online is expired or not yet valid", AUTO_FIX_CONDITIONAL,
       "A certificate a cloud connector may present is outside its validity period.",
       (CERTIFICATE_REQUIREMENTS, HC_CERTIFICATE), "Certificate lifetime (expired)"),
    _c("HM105", "exo-certificate-self-signed", CRITICAL,
       "A self-signed certificate faces Exchange Online", AUTO_FIX_CONDITIONAL,
       "A certificate a cloud connector may present is self-signed; Exchange Online accepts only certificates "
       "from a CA of the Microsoft Trusted Root Program.",
       (CERTIFICATE_REQUIREMENTS,)),
    # -- cloud connectors ----------------------------------------------------------------------
    _c("HM201", "connector-tls-certificate-name-empty", WARNING,
       "Cloud connector has no TlsCertificateName", AUTO_FIX_EXPOSED,
       "An enabled cloud send or receive connector has no TlsCertificateName, so transport chooses among the "
       "SMTP certificates matching its FQDN (the KB 2888788 gap).",
       (KB_2888788, SET_SEND_CONNECTOR, SET_RECEIVE_CONNECTOR, HC_CLOUD_CONNECTOR, HC_EXO_CONNECTOR),
       "Cloud connector: TlsCertificateName not set"),
    _c("HM202", "connector-tls-certificate-name-malformed", CRITICAL,
       "Cloud connector TlsCertificateName is malformed", AUTO_FIX_CONDITIONAL,
       "The TlsCertificateName of an enabled cloud connector is not of the form <I>issuer<S>subject.",
       (SET_SEND_CONNECTOR, SET_RECEIVE_CONNECTOR, HC_CLOUD_CONNECTOR), "Cloud connector: TlsCertificateName syntax"),
    _c("HM203", "connector-tls-certificate-not-found", CRITICAL,
       "Cloud connector TlsCertificateName names no certificate on the server", AUTO_FIX_CONDITIONAL,
       "The TlsCertificateName of an enabled cloud connector matches no certificate of this server: transport "
       "fails with 454 4.7.5 (certificate specified in TlsCertificateName could not be found).",
       (SET_SEND_CONNECTOR, HC_CLOUD_CONNECTOR), "Cloud connector: certificate not found on the server"),
    _c("HM204", "connector-tls-certificate-untrusted", CRITICAL,
       "Cloud connector TlsCertificateName selects a certificate Exchange Online does not trust", AUTO_FIX_CONDITIONAL,
       "The certificate the TlsCertificateName of an enabled cloud connector selects (the latest-expiring match) "
       "is not trusted by Exchange Online, or does not cover the name Exchange Online checks (the send connector's "
       "FQDN; for receive connectors the hybrid configuration's OnPremisesSmartHost).",
       (CERTIFICATE_REQUIREMENTS, SET_SEND_CONNECTOR)),
    _c("HM205", "connector-tls-certificate-not-smtp", CRITICAL,
       "Cloud connector TlsCertificateName selects a certificate not enabled for SMTP", AUTO_FIX_CONDITIONAL,
       "The certificate the TlsCertificateName of an enabled cloud connector selects is not enabled for SMTP: "
       "TLS fails with UnknownCredentials (KB 4051498).",
       (KB_4051498, ENABLE_CERTIFICATE)),
    _c("HM206", "connector-tls-certificate-differs-from-hybrid-configuration", WARNING,
       "Cloud connector TlsCertificateName differs from Get-HybridConfiguration",
       "when the connector's certificate cannot work and the hybrid configuration's can (enforce re-pins to it)",
       "An enabled cloud connector names another certificate than the hybrid configuration's TlsCertificateName.",
       (SET_HYBRID_CONFIGURATION, HC_CLOUD_CONNECTOR), "Cloud connector: TlsCertificateName differs from the hybrid configuration"),
    _c("HM207", "cloud-connector-disabled", WARNING,
       "Cloud connector is disabled", AUTO_FIX_NO,
       "A send or receive connector set up for Exchange Online is disabled.",
       (CONNECTORS_GUIDE, HC_CLOUD_CONNECTOR), "Cloud connector: connector enabled"),
    _c("HM211", "send-connector-require-tls", WARNING,
       "Cloud send connector does not require TLS", AUTO_FIX_NO,
       "RequireTLS is not True on a send connector toward Exchange Online (the Hybrid Configuration Wizard sets it).",
       (SET_SEND_CONNECTOR, CONNECTORS_GUIDE)),
    _c("HM212", "send-connector-tls-auth-level", WARNING,
       "Cloud send connector TlsAuthLevel is not DomainValidation", AUTO_FIX_NO,
       "TlsAuthLevel is not DomainValidation on a send connector toward Exchange Online.",
       (SET_SEND_CONNECTOR, HC_EXO_CONNECTOR), "Exchange Online connector: TlsAuthLevel"),
    _c("HM213", "send-connector-tls-domain", WARNING,
       "Cloud send connector TlsDomain is not mail.protection.outlook.com", AUTO_FIX_NO,
       "TlsAuthLevel is DomainValidation but TlsDomain is not mail.protection.outlook.com.",
       (SET_SEND_CONNECTOR, HC_EXO_CONNECTOR), "Exchange Online connector: DomainValidation without TlsDomain"),
    _c("HM214", "send-connector-cloud-services-mail", WARNING,
       "Cloud send connector has CloudServicesMailEnabled off", AUTO_FIX_NO,
       "CloudServicesMailEnabled is not True on a send connector toward Exchange Online: organization headers "
       "are stripped and Exchange Online cannot attribute the mail to the tenant.",
       (SET_SEND_CONNECTOR, HC_EXO_CONNECTOR), "Exchange Online connector: CloudServicesMailEnabled"),
    # -- every certificate ---------------------------------------------------------------------
    _c("HM301", "certificate-expiring", CRITICAL,
       "Certificate expires soon", AUTO_FIX_NO,
       "A certificate expires within the warning threshold (critical within the critical threshold when it is in "
       "use or faces Exchange Online; unused certificates are info).",
       (HC_CERTIFICATE, NEW_CERTIFICATE), "Certificate lifetime (< 60 / < 30 days)"),
    _c("HM302", "certificate-expired", WARNING,
       "Certificate has expired", AUTO_FIX_NO,
       "A certificate that does not face Exchange Online has expired (warning when enabled for a service, info "
       "otherwise). Expired certificates facing Exchange Online are HM104, the internal transport one HM312.",
       (HC_CERTIFICATE,), "Certificate lifetime (expired)"),
    _c("HM303", "certificate-weak-key", CRITICAL,
       "Certificate key is too small", AUTO_FIX_NO,
       "An RSA/DSA key below the minimum key size, or an EC key below 256 bits (critical when facing Exchange "
       "Online, warning when in use, info otherwise).",
       (HC_CERTIFICATE, CERTIFICATE_REQUIREMENTS), "Weak key size (< 2048)"),
    _c("HM304", "certificate-weak-signature", CRITICAL,
       "Certificate is signed with SHA-1 or MD5", AUTO_FIX_NO,
       "The certificate signature uses MD2, MD4, MD5 or SHA-1 (critical when facing Exchange Online, warning "
       "when in use, info otherwise).",
       (HC_CERTIFICATE,), "Weak hash algorithm (SHA-1/MD5)"),
    _c("HM305", "certificate-missing-private-key", CRITICAL,
       "Certificate has no private key on the server", AUTO_FIX_NO,
       "A certificate that a connector names or that is enabled for a service has no private key on the server "
       "(critical when a cloud connector's TlsCertificateName selects it, warning otherwise).",
       (IMPORT_CERTIFICATE,)),
    _c("HM306", "certificate-chain-incomplete", CRITICAL,
       "Certificate chain incomplete on the server", AUTO_FIX_NO,
       "The certificate reaches a trusted root only through intermediates the server does not hold; Exchange "
       "Online does not fetch missing intermediates (critical when facing Exchange Online).",
       (CERTIFICATE_REQUIREMENTS,)),
    _c("HM307", "certificate-exchange-status", CRITICAL,
       "Exchange reports a certificate status other than Valid", AUTO_FIX_NO,
       "Get-ExchangeCertificate Status is Revoked, DateInvalid or Invalid (HealthChecker red) or Unknown, "
       "Untrusted, RevocationCheckFailure or PendingRequest (HealthChecker yellow). Exchange's opinion, "
       "reported beside the collection's own verdict.",
       (HC_CERTIFICATE,), "Certificate status"),
    _c("HM311", "internal-transport-certificate-missing", CRITICAL,
       "Internal transport certificate is missing", AUTO_FIX_NO,
       "InternalTransportCertificateThumbprint is empty or names no certificate on the server; internal mail "
       "flow between Exchange servers breaks.",
       (HC_INTERNAL_TRANSPORT, NEW_CERTIFICATE), "Internal transport certificate missing"),
    _c("HM312", "internal-transport-certificate-expired", CRITICAL,
       "Internal transport certificate has expired", AUTO_FIX_NO,
       "The internal transport certificate is past its NotAfter date.",
       (HC_INTERNAL_TRANSPORT, NEW_CERTIFICATE), "Internal transport certificate expired"),
    _c("HM313", "internal-transport-certificate-not-smtp", CRITICAL,
       "Internal transport certificate is not enabled for SMTP", AUTO_FIX_NO,
       "The certificate InternalTransportCertificateThumbprint names is not enabled for SMTP, or has no private key: "
       "internal mail flow between Exchange servers breaks (what dropping SMTP from it, as KB 2888788's unbind step "
       "would under the \"replace\" reading, leaves). Enforcement refuses every change until it is restored.",
       (HC_INTERNAL_TRANSPORT, ENABLE_CERTIFICATE)),
    # -- what mail flow shows ------------------------------------------------------------------
    _c("HM401", "event-2004-untrusted-root", CRITICAL,
       "Event 2004: Exchange Online refused TLS (454 4.7.0 UntrustedRoot)", AUTO_FIX_NO,
       "MSExchangeTransport Event 2004 with 454 4.7.0 / UntrustedRoot in the lookback window (critical while a "
       "cause found by this audit remains or the queue to Exchange Online is failing; info once neither holds).",
       (KB_2888788,)),
    _c("HM402", "exchange-online-queue-stuck", CRITICAL,
       "Queue to Exchange Online is not delivering", AUTO_FIX_NO,
       "The queue toward Exchange Online is in Retry or Suspended, or holds messages with a last error "
       "(critical when the error is a TLS or certificate error).",
       (GET_QUEUE, KB_2888788)),
    _c("HM403", "tls12-disabled", CRITICAL,
       "TLS 1.2 or .NET strong crypto is disabled", AUTO_FIX_NO,
       "SCHANNEL TLS 1.2 client or server is disabled (Exchange Online requires TLS 1.2; critical on servers with "
       "cloud connectors), or .NET 4 SchUseStrongCrypto is off (warning).",
       (TLS_CONFIGURATION, HC_TLS), "TLS configuration"),
    # -- the fleet ------------------------------------------------------------------------------
    _c("HM501", "fleet-hybrid-certificate-inconsistent", WARNING,
       "Hybrid transport servers present different hybrid certificates", AUTO_FIX_NO,
       "The trusted certificates the hybrid transport servers present to Exchange Online (what they present when none "
       "is trusted) differ in issuer and subject; "
       "the hybrid certificate should be the same on all of them.",
       (CERTIFICATE_REQUIREMENTS,), scope="fleet"),
    # -- the audit itself ----------------------------------------------------------------------
    _c("HM901", "audit-incomplete", WARNING,
       "Some reads of the audit failed", AUTO_FIX_NO,
       "A read the audit can live without failed (for example the event log or the queue); the checks that "
       "depend on it could not run.",
       ()),
)

CATALOGUE = {check.id: check for check in CHECKS}
SERVER_CHECKS = tuple(check for check in CHECKS if check.scope == "server")
FLEET_CHECKS = tuple(check for check in CHECKS if check.scope == "fleet")

# Findings that explain Event 2004 (a cause of the TLS refusal still present on the server).
_CAUSES_OF_2004 = frozenset(
    {"HM101", "HM102", "HM103", "HM104", "HM105", "HM202", "HM203", "HM204", "HM205", "HM303", "HM304", "HM305",
     "HM306", "HM403"}
)

# ---------------------------------------------------------------------------------------------
# Findings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    id: str  # a CATALOGUE id
    severity: str  # critical, warning or info
    title: str  # this instance, for humans
    subject: str  # what it is about: a thumbprint, a connector identity, a host name, "server", "fleet"
    evidence: Mapping = field(default_factory=dict, hash=False)  # JSON-able
    remediation: str = ""
    auto_fix: bool = False  # whether enforce mode removes this finding
    references: tuple[str, ...] = ()
    exemption: str | None = None  # the reason, when an exemption applies; exempt findings never fail a run

    @property
    def name(self) -> str:
        check = CATALOGUE.get(self.id)
        return check.name if check else self.id

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "severity": self.severity,
            "title": self.title,
            "subject": self.subject,
            "evidence": _jsonable(self.evidence),
            "remediation": self.remediation,
            "auto_fix": self.auto_fix,
            "references": list(self.references),
            "exemption": self.exemption,
        }

    @classmethod
    def from_dict(cls, data: Mapping | Finding) -> Finding:
        """A finding from to_dict() output (e.g. a registered result); raises ValueError when it is not one."""
        if isinstance(data, Finding):
            return data
        if not isinstance(data, Mapping):
            raise ValueError("a finding must be a mapping, got %s" % type(data).__name__)
        missing = [key for key in ("id", "severity", "title") if key not in data]
        if missing:
            raise ValueError("finding lacks %s" % ", ".join(missing))
        if data["severity"] not in SEVERITIES:
            raise ValueError("finding %s has severity %r; expected one of %s" % (data["id"], data["severity"], ", ".join(SEVERITIES)))
        evidence = data.get("evidence") or {}
        return cls(
            id=str(data["id"]),
            severity=data["severity"],
            title=str(data["title"]),
            subject=str(data.get("subject") or ""),
            evidence=dict(evidence) if isinstance(evidence, Mapping) else {"value": evidence},
            remediation=str(data.get("remediation") or ""),
            auto_fix=bool(data.get("auto_fix")),
            references=tuple(str(item) for item in data.get("references") or ()),
            exemption=data.get("exemption") or None,
        )


def _jsonable(value):
    """A deep copy holding only JSON types (tuples -> lists, datetimes -> ISO, anything else -> str)."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_jsonable(item) for item in value]
        return sorted(items, key=json.dumps) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, datetime.datetime):
        return _iso(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def sort_key(finding: Finding):
    return (_RANK.get(finding.severity, 9), finding.id, finding.subject)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=sort_key)


def counts(findings: Iterable[Finding]) -> dict:
    """Non-exempt findings by severity, and how many were exempt."""
    result = {severity: 0 for severity in SEVERITIES}
    result["exempted"] = 0
    for finding in findings:
        if finding.exemption:
            result["exempted"] += 1
        else:
            result[finding.severity] += 1
    return result


def compliance(findings: Iterable[Finding | Mapping], fail_on: str = "critical") -> bool:
    """Whether findings pass the policy: fail_on "critical" fails on any critical finding, "warning" on any
    critical or warning one, "never" never fails. Exempt findings never count."""
    if fail_on not in FAIL_ON:
        raise ValueError("fail_on must be one of %s, got %r" % (", ".join(FAIL_ON), fail_on))
    if fail_on == "never":
        return True
    threshold = _RANK[fail_on]
    return not any(
        _RANK[finding.severity] <= threshold
        for finding in (Finding.from_dict(item) for item in findings)
        if not finding.exemption
    )


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
# Exemptions
# ---------------------------------------------------------------------------------------------


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return [str(value)]


def validate_exemptions(exemptions: Iterable[Mapping] | None) -> list[dict]:
    """Exemptions checked and normalized: {"id", "reason", "hosts": [glob], "subjects": [...], "until": date|None}.

    id must be a catalogue id (a typo must not silently exempt nothing); reason is required.
    """
    result = []
    for position, exemption in enumerate(exemptions or (), start=1):
        if not isinstance(exemption, Mapping):
            raise ValueError("exemption %d must be a mapping" % position)
        unknown = sorted(set(exemption) - {"id", "reason", "hosts", "subjects", "until"})
        if unknown:
            raise ValueError("exemption %d has unknown keys: %s" % (position, ", ".join(unknown)))
        check_id = str(exemption.get("id") or "")
        if check_id not in CATALOGUE:
            raise ValueError("exemption %d names %r, which is not a finding id (see docs/findings.md)" % (position, check_id))
        reason = str(exemption.get("reason") or "").strip()
        if not reason:
            raise ValueError("exemption %d (%s) needs a reason" % (position, check_id))
        until = exemption.get("until")
        if until is not None:
            text = until.isoformat() if isinstance(until, (datetime.date, datetime.datetime)) else str(until)
            try:
                until = datetime.date.fromisoformat(text[:10])
            except ValueError:
                raise ValueError("exemption %d (%s): until %r is not a date (YYYY-MM-DD)" % (position, check_id, until)) from None
        result.append({
            "id": check_id,
            "reason": reason,
            "hosts": [pattern.lower() for pattern in _as_list(exemption.get("hosts"))],
            "subjects": [subject.casefold() for subject in _as_list(exemption.get("subjects"))],
            "until": until,
        })
    return result


def apply_exemptions(findings: Iterable[Finding], exemptions: Iterable[Mapping] | None, host: str | None = None,
                     now: datetime.datetime | None = None) -> list[Finding]:
    """The findings with `exemption` set where an exemption matches: same id, host matching one of its glob
    patterns (any host when none), subject among its subjects (any when none), and `until` not passed."""
    rules = validate_exemptions(exemptions)
    today = (now or datetime.datetime.now(UTC)).date()
    host_key = (host or "").lower()
    result = []
    for finding in findings:
        for rule in rules:
            if rule["id"] != finding.id or (rule["until"] is not None and rule["until"] < today):
                continue
            if rule["hosts"] and not any(fnmatch.fnmatchcase(host_key, pattern) for pattern in rule["hosts"]):
                continue
            if rule["subjects"] and finding.subject.casefold() not in rule["subjects"]:
                continue
            finding = replace(finding, exemption=rule["reason"])
            break
        result.append(finding)
    return result


# ---------------------------------------------------------------------------------------------
# Reading the facts of one server
# ---------------------------------------------------------------------------------------------

CLOUD_TLS_DOMAIN = "mail.protection.outlook.com"
WEAK_SIGNATURE_HASHES = frozenset({"md2", "md4", "md5", "sha1"})
MIN_EC_KEY_BITS = 256
# HealthChecker's colours for Get-ExchangeCertificate Status (exchange-facts.md).
STATUS_RED = frozenset({"revoked", "dateinvalid", "invalid"})
STATUS_YELLOW = frozenset({"unknown", "untrusted", "revocationcheckfailure", "pendingrequest"})
# Reason codes of a verdict that have a check of their own; the rest make HM103.
_OWN_CHECK_REASONS = frozenset({"self_signed", "expired", "not_yet_valid", "incomplete_chain", "no_private_key", "weak_key", "weak_signature"})
# Untranslated tokens of TLS failures in a queue's LastError.
_TLS_ERROR_TOKENS = ("454 4.7.0", "4.7.5", "untrustedroot", "unknowncredentials", "nocredentials", "tls", "certificate")

_LABEL_LIMIT = 80


def _iso(value: datetime.datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


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


class _Server:
    """The facts of one server with the derived views every check needs."""

    def __init__(self, facts: Mapping, options: Options):
        if not isinstance(facts, Mapping):
            raise ValueError("facts must be a mapping (certificate_info's result), got %s" % type(facts).__name__)
        self.facts = facts
        self.options = options
        gathered = _model.parse_utc(facts.get("gathered_at"))
        self.now = options.now or gathered or datetime.datetime.now(UTC)
        server = facts.get("server") or {}
        self.name = server.get("name") or ""
        self.fqdn = _lower(server.get("fqdn") or self.name)
        self.certificates = [cert for cert in facts.get("certificates") or () if isinstance(cert, Mapping)]
        self.by_thumbprint = {_model.normalize_thumbprint(cert.get("thumbprint")): cert for cert in self.certificates}
        self.warnings = [str(warning) for warning in facts.get("warnings") or ()]
        hybrid = facts.get("hybrid_configuration") or {}
        self.hybrid_tls_name = hybrid.get("tls_certificate_name")
        self.smart_host = _lower(hybrid.get("on_premises_smart_host"))

        self.connectors = []  # (kind, connector) of every cloud connector, enabled or not
        for connector in facts.get("send_connectors") or ():
            if connector.get("is_cloud") or any(_lower(host).endswith("." + CLOUD_TLS_DOMAIN) for host in connector.get("smart_hosts") or ()):
                self.connectors.append(("send", connector))
        for connector in facts.get("receive_connectors") or ():
            if connector.get("is_cloud"):
                self.connectors.append(("receive", connector))
        self.enabled_connectors = [(kind, c) for kind, c in self.connectors if c.get("enabled") is not False]

        # thumbprint -> the connectors that may present it to Exchange Online
        self.facing: dict[str, list[dict]] = {}
        for kind, connector in self.enabled_connectors:
            for cert in self.presented(connector):
                self.facing.setdefault(self.thumbprint(cert), []).append(self.connector_ref(kind, connector))
        self.referenced = set()  # thumbprints named by any TlsCertificateName (connectors, hybrid configuration)
        for _kind, connector in self.connectors:
            self.referenced.update(_model.normalize_thumbprint(t) for t in connector.get("tls_certificate_thumbprints") or ())
        hybrid_name = _model.parse_tls_certificate_name(self.hybrid_tls_name)
        if hybrid_name is not None:
            self.referenced.update(self.thumbprint(cert) for cert in self.certificates if self.named_by(hybrid_name, cert))
        # Whether enforce refuses every step here: a name Exchange Online checks has no trusted certificate at all.
        self.enforce_blocked = any(not self.trusted_covering(self.verified_name(kind, connector))
                                   for kind, connector in self.enabled_connectors if self.managed(connector))

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
    def covers(cert: Mapping, name: str) -> bool:
        """As Exchange selects: the hybrid names _facts matched, or a DNS name of the certificate."""
        return name in {_lower(n) for n in cert.get("hybrid_names") or ()} or any(
            _model.dns_name_matches(str(domain), name) for domain in cert.get("domains") or ())

    @staticmethod
    def trusted_for(cert: Mapping, name: str) -> bool:
        """Exchange Online accepts it for name: a trusted verdict and a DNS identifier covering name."""
        return _Server.trusted(cert) and any(_model.dns_name_matches(str(domain), name) for domain in cert.get("domains") or ())

    @staticmethod
    def usable(cert: Mapping) -> bool:
        """Transport can present it: enabled for SMTP, and the private key is not known to be missing."""
        return "SMTP" in (cert.get("services") or ()) and cert.get("has_private_key") is not False

    @staticmethod
    def named_by(tls_name: _model.TlsCertificateName, cert: Mapping) -> bool:
        return (_name_key(tls_name.issuer), _name_key(tls_name.subject)) == (_name_key(cert.get("issuer")), _name_key(cert.get("subject")))

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

    def is_facing(self, cert: Mapping) -> bool:
        return self.thumbprint(cert) in self.facing

    def in_use(self, cert: Mapping) -> bool:
        """Enabled for a service, the internal transport or Auth certificate, or named by a TlsCertificateName."""
        return bool(cert.get("services")) or bool(cert.get("is_internal_transport")) or bool(cert.get("is_auth_certificate")) \
            or self.thumbprint(cert) in self.referenced

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
            "faces_exchange_online_via": [ref["identity"] for ref in self.facing.get(self.thumbprint(cert), ())],
        }

    # -- connectors -----------------------------------------------------------------------------

    def connector_name(self, connector: Mapping) -> str:
        """The FQDN a connector selects certificates by (without TlsCertificateName): its Fqdn, else the server FQDN."""
        return _lower(connector.get("fqdn") or self.fqdn)

    def verified_name(self, kind: str, connector: Mapping) -> str:
        """The name Exchange Online checks the certificate against. For a send connector, its FQDN (the Hybrid
        Configuration Wizard sets it to the hybrid certificate's name). For a receive connector, the host
        Exchange Online delivers to, the hybrid configuration's OnPremisesSmartHost: the connector's own Fqdn
        is the server FQDN on the wizard's "Default Frontend" connector, which the hybrid certificate need not cover."""
        if kind == "receive":
            # Without a hybrid configuration (an Edge server), the public name is the one its cloud
            # send connectors present; the receive connector's Fqdn is the server's own name.
            send_names = [self.connector_name(c) for k, c in self.enabled_connectors if k == "send"]
            if self.smart_host or send_names:
                return self.smart_host or send_names[0]
        return self.connector_name(connector)

    @staticmethod
    def connector_ref(kind: str, connector: Mapping) -> dict:
        return {"kind": kind, "identity": str(connector.get("identity") or connector.get("name") or "?")}

    @staticmethod
    def pin_state(connector: Mapping) -> str:
        """empty, malformed, not_found or resolved."""
        text = connector.get("tls_certificate_name")
        if not text or not str(text).strip():
            return "empty"
        if connector.get("tls_certificate_name_problem") or _model.parse_tls_certificate_name(text) is None:
            return "malformed"
        return "resolved" if connector.get("tls_certificate_thumbprints") else "not_found"

    def pinned_target(self, connector: Mapping) -> Mapping | None:
        """The certificate a resolved TlsCertificateName selects: the first listed (latest expiry)."""
        for thumbprint in connector.get("tls_certificate_thumbprints") or ():
            cert = self.by_thumbprint.get(_model.normalize_thumbprint(thumbprint))
            if cert is not None:
                return cert
        return None

    def candidates(self, name: str) -> list[Mapping]:
        """What transport chooses among for name without TlsCertificateName."""
        return [cert for cert in self.certificates if self.usable(cert) and self.covers(cert, name)]

    def works(self, kind: str, connector: Mapping) -> bool:
        """Whether the connector can present a trusted certificate: a trusted candidate, or a pinned target that
        is trusted for the name Exchange Online checks, enabled for SMTP and has its private key."""
        presented = self.presented(connector)
        if self.pin_state(connector) == "resolved":
            return bool(presented) and self.usable(presented[0]) and self.trusted_for(presented[0], self.verified_name(kind, connector))
        return any(self.trusted(cert) for cert in presented)

    # -- what enforce mode can do ----------------------------------------------------------------
    # Mirrors the planner (_plan.py): it refuses every step on a server where a name Exchange Online
    # checks has no trusted certificate at all; otherwise it enables SMTP on a trusted certificate for
    # each such name when none has it, re-pins broken connectors and unpinned ones that could offer an
    # untrusted certificate, and drops SMTP from untrusted certificates they could offer. It manages
    # the connectors _snapshot calls cloud connectors (is_cloud), not the smart-host-only ones added here.

    @staticmethod
    def managed(connector: Mapping) -> bool:
        return bool(connector.get("is_cloud"))

    def trusted_covering(self, name: str, excluding: str | None = None) -> list[Mapping]:
        """Trusted certificates for name, enabled for SMTP or not (enforce can enable SMTP)."""
        return [cert for cert in self.certificates if self.thumbprint(cert) != excluding and self.trusted_for(cert, name)]

    def fixable(self, kind: str, connector: Mapping) -> bool:
        """Whether enforce can make this connector present a trusted certificate."""
        return self.managed(connector) and not self.enforce_blocked and bool(self.trusted_covering(self.verified_name(kind, connector)))

    def presented(self, connector: Mapping) -> list[Mapping]:
        state = self.pin_state(connector)
        if state == "resolved":
            target = self.pinned_target(connector)
            return [target] if target is not None else []
        if state == "empty":
            return self.candidates(self.connector_name(connector))
        return []  # malformed or not found: transport fails before presenting anything

    def usable_trusted(self, name: str, excluding: str | None = None) -> list[Mapping]:
        return [cert for cert in self.certificates
                if self.thumbprint(cert) != excluding and self.usable(cert) and self.trusted_for(cert, name)]

    def alternative_for(self, cert: Mapping) -> bool:
        """Whether enforce can stop cert from facing Exchange Online: every connector presenting it is managed and
        has another trusted certificate for its name, and nothing blocks enforce on this server."""
        presenting = [(kind, connector) for kind, connector in self.enabled_connectors
                      if any(self.thumbprint(c) == self.thumbprint(cert) for c in self.presented(connector))]
        return bool(presenting) and not self.enforce_blocked and all(
            self.managed(connector) and self.trusted_covering(self.verified_name(kind, connector), excluding=self.thumbprint(cert))
            for kind, connector in presenting)

    def has_cloud_connectors(self) -> bool:
        return bool(self.enabled_connectors)


def _finding(check_id: str, severity: str, title: str, subject: str, evidence: Mapping, remediation: str,
             auto_fix: bool, references: Sequence[str] | None = None) -> Finding:
    check = CATALOGUE[check_id]
    return Finding(
        id=check_id,
        severity=severity,
        title=title,
        subject=subject,
        evidence=_jsonable(evidence),
        remediation=remediation,
        auto_fix=auto_fix,
        references=tuple(references if references is not None else check.references),
    )


def _set_connector_command(kind: str, identity: str, thumbprint: str) -> str:
    cmdlet = "Set-SendConnector" if kind == "send" else "Set-ReceiveConnector"
    return ("$c = Get-ExchangeCertificate -Thumbprint %s; %s -Identity %s -TlsCertificateName \"<I>$($c.Issuer)<S>$($c.Subject)\""
            % (_thumbprint_arg(thumbprint), cmdlet, ps_literal(identity)))


# ---------------------------------------------------------------------------------------------
# Checks: the certificate Exchange Online sees
# ---------------------------------------------------------------------------------------------


def _names_of_unpinned(server: _Server) -> dict[str, list]:
    names: dict[str, list] = {}
    for kind, connector in server.enabled_connectors:
        if server.pin_state(connector) == "empty":
            names.setdefault(server.connector_name(connector), []).append((kind, connector))
    return names


def _check_kb2888788(server: _Server) -> list[Finding]:
    findings = []
    untrusted_root_events = sum(1 for event in server.facts.get("events") or () if isinstance(event, Mapping) and event.get("untrusted_root"))
    for name, connectors in sorted(_names_of_unpinned(server).items()):
        candidates = server.candidates(name)
        trusted = [cert for cert in candidates if server.trusted(cert)]
        untrusted = [cert for cert in candidates if not server.trusted(cert)]
        if not trusted or not untrusted:
            continue
        best = max(trusted, key=lambda cert: (cert.get("not_after") or "", server.thumbprint(cert)))
        commands = [_set_connector_command(kind, server.connector_ref(kind, c)["identity"], server.thumbprint(best)) for kind, c in connectors]
        findings.append(_finding(
            "HM101", CRITICAL,
            "KB 2888788: %d SMTP certificates match %s, %d of them not trusted by Exchange Online, and no TlsCertificateName pins the trusted one"
            % (len(candidates), name, len(untrusted)),
            name,
            {
                "fqdn": name,
                "connectors": [server.connector_ref(kind, c) for kind, c in connectors],
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
            auto_fix=not server.enforce_blocked and all(server.managed(c) for _kind, c in connectors),
        ))
    return findings


def _check_no_trusted(server: _Server) -> list[Finding]:
    findings = []
    names: dict[str, list] = {}
    for kind, connector in server.enabled_connectors:
        if not server.works(kind, connector):
            names.setdefault(server.verified_name(kind, connector), []).append((kind, connector))
    for name, connectors in sorted(names.items()):
        if server.usable_trusted(name):
            continue  # re-pinning fixes it: the connector findings say how
        refs = [server.connector_ref(kind, connector) for kind, connector in connectors]
        trusted_unusable = [cert for cert in server.certificates if server.trusted_for(cert, name)]
        smtp_candidates = server.candidates(name)
        hint = ""
        if trusted_unusable:
            hint = (" A trusted certificate for it exists but is not enabled for SMTP or lacks its private key (%s): enable SMTP on it "
                    "with Enable-ExchangeCertificate -Thumbprint <x> -Services SMTP (this prompts to replace the default SMTP "
                    "certificate; answer no, or restore the internal transport certificate afterwards)."
                    % ", ".join(server.thumbprint(cert) for cert in trusted_unusable))
        findings.append(_finding(
            "HM102", CRITICAL,
            "No SMTP certificate trusted by Exchange Online covers %s" % name,
            name,
            {
                "fqdn": name,
                "connectors": refs,
                "trusted_but_not_usable": [server.certificate_evidence(cert) for cert in trusted_unusable],
                "smtp_candidates": [server.certificate_evidence(cert) for cert in smtp_candidates],
            },
            "Exchange Online accepts only a certificate from a CA of the Microsoft Trusted Root Program that covers %s, is valid, "
            "and is sent with its full chain. Obtain one (New-ExchangeCertificate -GenerateRequest, or your CA's process), "
            "install it with Import-ExchangeCertificate, enable it for SMTP and pin it on the cloud connectors "
            "(TlsCertificateName).%s See %s" % (name, hint, CERTIFICATE_REQUIREMENTS),
            auto_fix=bool(trusted_unusable) and all(server.fixable(kind, connector) for kind, connector in connectors),
        ))
    return findings


def _exo_certificate_remediation(server: _Server, cert: Mapping, problem: str) -> tuple[str, bool]:
    alternative = server.alternative_for(cert)
    if alternative:
        text = ("%s A trusted SMTP certificate for the same name is on the server: pin it on the connector(s) "
                "(TlsCertificateName) or stop this one from serving SMTP, as KB 2888788 describes." % problem)
    else:
        text = ("%s Replace it with a certificate from a CA of the Microsoft Trusted Root Program that covers the hybrid "
                "FQDN, enable it for SMTP and pin it on the cloud connectors." % problem)
    return text + " See %s" % CERTIFICATE_REQUIREMENTS, alternative


def _check_exo_certificates(server: _Server) -> list[Finding]:
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
            text, fix = _exo_certificate_remediation(
                server, cert, "Exchange Online refuses this certificate (%s)." % ", ".join(other))
            findings.append(_finding("HM103", CRITICAL, "Certificate %s (%s) faces Exchange Online but is not trusted: %s"
                                     % (label, thumbprint, ", ".join(other)), thumbprint, evidence, text, fix))
        if server.expired(cert) or server.not_yet_valid(cert) or {"expired", "not_yet_valid"} & set(codes):
            state = "not yet valid" if server.not_yet_valid(cert) and not server.expired(cert) else "expired"
            text, fix = _exo_certificate_remediation(server, cert, "The certificate is %s (NotAfter %s)." % (state, cert.get("not_after")))
            findings.append(_finding("HM104", CRITICAL, "Certificate %s (%s) faces Exchange Online and is %s" % (label, thumbprint, state),
                                     thumbprint, evidence, text, fix, (CERTIFICATE_REQUIREMENTS, HC_CERTIFICATE)))
        if self_signed:
            text, fix = _exo_certificate_remediation(server, cert, "The certificate is self-signed.")
            findings.append(_finding("HM105", CRITICAL, "Self-signed certificate %s (%s) faces Exchange Online" % (label, thumbprint),
                                     thumbprint, evidence, text, fix))
    return findings


# ---------------------------------------------------------------------------------------------
# Checks: cloud connectors
# ---------------------------------------------------------------------------------------------


def _check_connectors(server: _Server) -> list[Finding]:
    findings = []
    hybrid_name = _model.parse_tls_certificate_name(server.hybrid_tls_name)
    for kind, connector in server.connectors:
        ref = server.connector_ref(kind, connector)
        identity = ref["identity"]
        base = dict(ref, fqdn=server.connector_name(connector), verified_name=server.verified_name(kind, connector),
                    tls_certificate_name=connector.get("tls_certificate_name"))
        set_cmdlet_link = SET_SEND_CONNECTOR if kind == "send" else SET_RECEIVE_CONNECTOR
        if connector.get("enabled") is False:
            findings.append(_finding(
                "HM207", WARNING, "Cloud %s connector %s is disabled" % (kind, identity), identity, base,
                "A %s connector set up for Exchange Online is disabled; mail to or from Exchange Online takes another route or "
                "none. Enable it or remove it, and re-run the Hybrid Configuration Wizard if the hybrid setup changed. See %s"
                % (kind, CONNECTORS_GUIDE), False))
            continue
        name = server.verified_name(kind, connector)
        alternatives = server.usable_trusted(name)
        fixable = server.fixable(kind, connector)
        fix_command = _set_connector_command(kind, identity, server.thumbprint(alternatives[0])) if alternatives else None
        pin_advice = ("Pin the trusted certificate: %s." % fix_command) if fix_command else (
            "No trusted SMTP certificate for %s is on the server yet (see HM102); install one, then pin it." % name)
        state = server.pin_state(connector)
        if state == "empty":
            findings.append(_finding(
                "HM201", WARNING, "Cloud %s connector %s has no TlsCertificateName" % (kind, identity), identity,
                dict(base, candidates=[server.thumbprint(c) for c in server.candidates(server.connector_name(connector))]),
                "Without TlsCertificateName transport picks any SMTP certificate matching %s, which is how KB 2888788 happens. %s "
                "See %s" % (server.connector_name(connector), pin_advice, set_cmdlet_link),
                fixable and any(not server.trusted(cert) for cert in server.presented(connector))))
        elif state == "malformed":
            problem = connector.get("tls_certificate_name_problem") or _model.tls_certificate_name_problem(connector.get("tls_certificate_name"))
            findings.append(_finding(
                "HM202", CRITICAL, "Cloud %s connector %s has a malformed TlsCertificateName (%s)" % (kind, identity, problem), identity,
                dict(base, problem=problem),
                "TlsCertificateName must read <I>issuer<S>subject, built from the certificate itself. %s See %s" % (pin_advice, set_cmdlet_link),
                fixable))
        elif state == "not_found":
            findings.append(_finding(
                "HM203", CRITICAL, "Cloud %s connector %s names a certificate that is not on this server" % (kind, identity), identity, base,
                "Transport fails with 454 4.7.5 (the certificate specified in TlsCertificateName could not be found). Install the "
                "named certificate on this server (with its private key, enabled for SMTP) or point the connector at one that is. "
                "%s See %s" % (pin_advice, set_cmdlet_link), fixable))
        else:
            target = server.pinned_target(connector)
            if target is not None:
                target_tp = server.thumbprint(target)
                if not server.trusted_for(target, name):
                    others = server.usable_trusted(name, excluding=target_tp)
                    why = ", ".join(server.codes(target)) if not server.trusted(target) else "it does not cover %s" % name
                    findings.append(_finding(
                        "HM204", CRITICAL,
                        "Cloud %s connector %s selects certificate %s (%s), which Exchange Online does not accept: %s"
                        % (kind, identity, _label(target), target_tp, why or "untrusted"), identity,
                        dict(base, certificate=server.certificate_evidence(target)),
                        "The TlsCertificateName selects a certificate Exchange Online refuses. %s See %s"
                        % (("Pin the trusted certificate: %s." % _set_connector_command(kind, identity, server.thumbprint(others[0])))
                           if others else "Install a trusted certificate for %s and pin it." % name, CERTIFICATE_REQUIREMENTS),
                        fixable))
                if "SMTP" not in (target.get("services") or ()):
                    findings.append(_finding(
                        "HM205", CRITICAL,
                        "Cloud %s connector %s selects certificate %s (%s), which is not enabled for SMTP" % (kind, identity, _label(target), target_tp),
                        identity, dict(base, certificate=server.certificate_evidence(target)),
                        "TLS fails with UnknownCredentials (KB 4051498). Enable SMTP on the selected certificate "
                        "(Enable-ExchangeCertificate -Thumbprint %s -Services SMTP; it prompts to replace the default SMTP "
                        "certificate: answer no) or pin a certificate that is. See %s" % (_thumbprint_arg(target_tp), KB_4051498),
                        fixable))
        connector_name = _model.parse_tls_certificate_name(connector.get("tls_certificate_name"))
        if connector_name is not None and hybrid_name is not None and (
                (_name_key(connector_name.issuer), _name_key(connector_name.subject)) != (_name_key(hybrid_name.issuer), _name_key(hybrid_name.subject))):
            findings.append(_finding(
                "HM206", WARNING, "Cloud %s connector %s names another certificate than Get-HybridConfiguration" % (kind, identity), identity,
                dict(base, hybrid_configuration_tls_certificate_name=server.hybrid_tls_name),
                "The connector and the hybrid configuration disagree on the hybrid certificate; the next Hybrid Configuration "
                "Wizard run rewrites the connector from the hybrid configuration. Decide which certificate is right, then run the "
                "wizard (or Set-HybridConfiguration -TlsCertificateName and the connector alike). See %s" % SET_HYBRID_CONFIGURATION,
                # enforce re-pins a connector that cannot work, preferring the hybrid configuration's certificate
                fixable and not server.works(kind, connector) and any(
                    server.named_by(hybrid_name, cert) for cert in server.usable_trusted(name))))
        if kind == "send":
            findings.extend(_send_connector_settings(connector, identity, base))
    return findings


def _send_connector_settings(connector: Mapping, identity: str, base: Mapping) -> list[Finding]:
    findings = []
    hcw = "The Hybrid Configuration Wizard sets it; re-run the wizard or use Set-SendConnector -Identity %s %s. See %s"
    if connector.get("require_tls") is not True:
        findings.append(_finding(
            "HM211", WARNING, "Cloud send connector %s does not require TLS" % identity, identity,
            dict(base, require_tls=connector.get("require_tls")),
            "Without RequireTLS mail to Exchange Online may leave unencrypted and unauthenticated. " + hcw
            % (ps_literal(identity), "-RequireTLS $true", SET_SEND_CONNECTOR), False))
    level = connector.get("tls_auth_level")
    if _lower(level) != "domainvalidation":
        findings.append(_finding(
            "HM212", WARNING, "Cloud send connector %s has TlsAuthLevel %s, not DomainValidation" % (identity, level or "(empty)"), identity,
            dict(base, tls_auth_level=level),
            "DomainValidation makes transport check that the Exchange Online certificate is for mail.protection.outlook.com. "
            + hcw % (ps_literal(identity), "-TlsAuthLevel DomainValidation -TlsDomain mail.protection.outlook.com", SET_SEND_CONNECTOR),
            False))
    elif _lower(connector.get("tls_domain")) != CLOUD_TLS_DOMAIN:
        findings.append(_finding(
            "HM213", WARNING, "Cloud send connector %s has TlsDomain %s, not %s" % (identity, connector.get("tls_domain") or "(empty)", CLOUD_TLS_DOMAIN),
            identity, dict(base, tls_domain=connector.get("tls_domain")),
            "With DomainValidation the TlsDomain must be %s. " % CLOUD_TLS_DOMAIN
            + hcw % (ps_literal(identity), "-TlsDomain mail.protection.outlook.com", SET_SEND_CONNECTOR), False))
    if connector.get("cloud_services_mail_enabled") is not True:
        findings.append(_finding(
            "HM214", WARNING, "Cloud send connector %s has CloudServicesMailEnabled off" % identity, identity,
            dict(base, cloud_services_mail_enabled=connector.get("cloud_services_mail_enabled")),
            "Without CloudServicesMailEnabled Exchange strips the organization headers, so Exchange Online cannot tell the "
            "mail comes from your organization. " + hcw % (ps_literal(identity), "-CloudServicesMailEnabled $true", SET_SEND_CONNECTOR),
            False))
    return findings


# ---------------------------------------------------------------------------------------------
# Checks: every certificate
# ---------------------------------------------------------------------------------------------


def _check_certificates(server: _Server) -> list[Finding]:
    findings = []
    options = server.options
    for cert in server.certificates:
        thumbprint, label = server.thumbprint(cert), _label(cert)
        evidence = server.certificate_evidence(cert)
        codes = set(server.codes(cert))
        relevant = server.is_facing(cert) or server.in_use(cert)
        days = server.days_remaining(cert)
        expired = server.expired(cert)
        if days is not None and not expired and days < options.expiry_warning_days:
            if not relevant:
                severity = INFO
            else:
                severity = CRITICAL if days < options.expiry_critical_days else WARNING
            findings.append(_finding(
                "HM301", severity, "Certificate %s (%s) expires in %d days" % (label, thumbprint, days), thumbprint,
                dict(evidence, warning_days=options.expiry_warning_days, critical_days=options.expiry_critical_days),
                "Renew it before %s: for a CA certificate request a renewal (New-ExchangeCertificate -GenerateRequest), import it "
                "with Import-ExchangeCertificate, enable the same services, re-pin TlsCertificateName on the cloud connectors if "
                "issuer or subject changed, then remove the old one. See %s" % (cert.get("not_after"), NEW_CERTIFICATE),
                False))
        if expired and not server.is_facing(cert) and not cert.get("is_internal_transport"):
            findings.append(_finding(
                "HM302", WARNING if server.in_use(cert) else INFO, "Certificate %s (%s) expired on %s" % (label, thumbprint, cert.get("not_after")),
                thumbprint, evidence,
                "Renew or replace it and move its services to the new certificate; remove it once nothing uses it "
                "(Remove-ExchangeCertificate refuses a certificate a connector still names). See %s" % HC_CERTIFICATE, False))
        key_type, key_size = cert.get("key_type"), cert.get("key_size")
        weak_key = "weak_key" in codes or (
            isinstance(key_size, int) and (
                (key_type in ("RSA", "DSA") and key_size < options.min_key_size) or (key_type == "EC" and key_size < MIN_EC_KEY_BITS)))
        if weak_key:
            findings.append(_finding(
                "HM303", server.tier(cert), "Certificate %s (%s) has a %s key of %s bits" % (label, thumbprint, key_type, key_size),
                thumbprint, dict(evidence, key_type=key_type, key_size=key_size, min_key_size=options.min_key_size),
                "Re-issue the certificate with an RSA key of at least %d bits (or EC P-256 or larger), then move its services to "
                "the new certificate. See %s" % (options.min_key_size, HC_CERTIFICATE), False))
        signature = _lower(cert.get("signature_hash"))
        if "weak_signature" in codes or signature in WEAK_SIGNATURE_HASHES:
            findings.append(_finding(
                "HM304", server.tier(cert), "Certificate %s (%s) is signed with %s" % (label, thumbprint, (signature or "a weak hash").upper()),
                thumbprint, dict(evidence, signature_hash=cert.get("signature_hash")),
                "Re-issue the certificate with a SHA-256 (or stronger) signature. See %s" % HC_CERTIFICATE, False))
        if cert.get("has_private_key") is False and relevant:
            pinned_for_exo = server.is_facing(cert) or thumbprint in server.referenced
            findings.append(_finding(
                "HM305", CRITICAL if pinned_for_exo else WARNING, "Certificate %s (%s) has no private key on this server" % (label, thumbprint),
                thumbprint, evidence,
                "The server cannot present a certificate without its private key. Import the certificate with its key (a PFX) "
                "using Import-ExchangeCertificate, or complete the pending request on this server. See %s" % IMPORT_CERTIFICATE, False))
        if "incomplete_chain" in codes:
            reason = next((r.get("message") for r in evidence["reasons"] if r.get("code") == "incomplete_chain"), None)
            findings.append(_finding(
                "HM306", server.tier(cert), "Certificate %s (%s) chains to a trusted root only through intermediates the server lacks"
                % (label, thumbprint), thumbprint, dict(evidence, chain=list(cert.get("chain") or ()), detail=reason),
                "Exchange Online does not fetch missing intermediates: import the issuing CA's intermediate certificate(s) into "
                "the server's Intermediate Certification Authorities store, then restart MSExchangeTransport. See %s"
                % CERTIFICATE_REQUIREMENTS, False))
        colour = status_colour(cert.get("status"))
        if colour in ("red", "yellow"):
            status = cert.get("status")
            if _lower(status) == "pendingrequest":
                severity = INFO
            elif colour == "red":
                severity = server.tier(cert)
            else:
                severity = WARNING if server.is_facing(cert) else INFO
            findings.append(_finding(
                "HM307", severity, "Exchange reports certificate %s (%s) as %s" % (label, thumbprint, status), thumbprint, evidence,
                "Get-ExchangeCertificate reports %s (HealthChecker: %s). Exchange judges with the server's own trust store and "
                "revocation checks; compare with this collection's verdict in the evidence. Revoked, Invalid or DateInvalid "
                "certificates must be replaced; RevocationCheckFailure means the server cannot reach the CRL/OCSP endpoints. See %s"
                % (status, colour, HC_CERTIFICATE), False))
    return findings


def _check_internal_transport(server: _Server) -> list[Finding]:
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
            "server", {"internal_transport_certificate": thumbprint or None}, "Internal mail flow with this server breaks. " + recreate, False)]
    if not server.usable(cert):
        return [_finding(
            "HM313", CRITICAL, "Internal transport certificate %s is not enabled for SMTP%s" % (
                thumbprint, "" if "SMTP" not in (cert.get("services") or ()) else " with its private key"),
            thumbprint, server.certificate_evidence(cert),
            "Internal mail flow with this server breaks. Restore it: Enable-ExchangeCertificate -Thumbprint %s -Services SMTP "
            "-Force (it stays the internal transport certificate), then Get-TransportService | fl InternalTransportCertificateThumbprint. "
            "Never remove SMTP from the internal transport certificate. See %s" % (thumbprint, HC_INTERNAL_TRANSPORT)
            if cert.get("has_private_key") is not False else "Internal mail flow with this server breaks. " + recreate, False)]
    if server.expired(cert):
        return [_finding(
            "HM312", CRITICAL, "Internal transport certificate %s expired on %s" % (thumbprint, cert.get("not_after")), thumbprint,
            server.certificate_evidence(cert), "Internal mail flow with this server breaks. " + recreate, False)]
    return []


# ---------------------------------------------------------------------------------------------
# Checks: what mail flow shows
# ---------------------------------------------------------------------------------------------


def _queue_state(server: _Server) -> tuple[bool, bool, Mapping | None]:
    """(stuck, tls_error, queue) of the queue toward Exchange Online."""
    queue = server.facts.get("exchange_online_queue")
    if not isinstance(queue, Mapping):
        return False, False, None
    error = " ".join(str(queue.get("last_error") or "").split()).lower()
    count = queue.get("message_count")
    waiting = isinstance(count, int) and not isinstance(count, bool) and count > 0
    stuck = _lower(queue.get("status")) in ("retry", "suspended") or (waiting and bool(error))
    return stuck, stuck and any(token in error for token in _TLS_ERROR_TOKENS), queue


def _check_queue(server: _Server, findings_so_far: Sequence[Finding]) -> list[Finding]:
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
           if tls_error else "Look at LastError for the cause (DNS, network, connector). ", ps_literal(identity), GET_QUEUE),
        False)]


def _retried_before_change(server: _Server, queue: Mapping | None) -> bool:
    """Whether the queue last tried before this run changed the server (facts["changed_at"], set by the
    enforcement modules), so that its last error describes the state before the change."""
    changed_at = _model.parse_utc(server.facts.get("changed_at"))
    last_retry = _model.parse_utc((queue or {}).get("last_retry_time"))
    return changed_at is not None and (last_retry is None or last_retry <= changed_at)


def _causes_of_2004(findings_so_far: Sequence[Finding]) -> list[str]:
    return sorted({finding.id for finding in findings_so_far if finding.severity == CRITICAL and finding.id in _CAUSES_OF_2004})


def _check_events(server: _Server, findings_so_far: Sequence[Finding]) -> list[Finding]:
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
    if ongoing:
        return [_finding(
            "HM401", CRITICAL,
            "%d Event 2004 (454 4.7.0 UntrustedRoot) since %s; the cause is still present" % (len(events), evidence["oldest"]), "server",
            evidence,
            "Exchange Online refused the certificate transport presented. Fix the findings listed in causes_found (KB 2888788), "
            "then confirm that no new Event 2004 appears and the queue drains. See %s" % KB_2888788, False)]
    return [_finding(
        "HM401", INFO,
        "%d Event 2004 (454 4.7.0 UntrustedRoot) between %s and %s; no cause remains and the queue is not failing"
        % (len(events), evidence["oldest"], evidence["newest"]), "server", evidence,
        "The events predate the current state: the audit finds no remaining cause. Watch for new Event 2004 entries; if they "
        "recur, check the certificate the send connector log shows (Set-SendConnector -ProtocolLoggingLevel Verbose). See %s"
        % KB_2888788, False)]


def _check_tls(server: _Server) -> list[Finding]:
    state = server.facts.get("tls12")
    if not isinstance(state, Mapping):
        return []
    disabled = [key for key in ("Tls12ClientEnabled", "Tls12ServerEnabled") if state.get(key) is False]
    weak_net = state.get("StrongCryptoNet4") is False
    if not disabled and not weak_net:
        return []
    severity = CRITICAL if disabled and server.has_cloud_connectors() else WARNING
    parts = (["TLS 1.2 %s disabled" % " and ".join(key[5:-7].lower() for key in disabled)] if disabled else []) + (
        [".NET 4 SchUseStrongCrypto off"] if weak_net else [])
    return [_finding(
        "HM403", severity, "%s on this server" % "; ".join(parts), "server", dict(state),
        "Exchange Online accepts only TLS 1.2 or later. Enable TLS 1.2 for the SCHANNEL client and server and set "
        "SchUseStrongCrypto and SystemDefaultTlsVersions for .NET 4, as Microsoft's Exchange TLS guidance describes, then "
        "reboot. See %s" % TLS_CONFIGURATION, False)]


def _check_audit(server: _Server) -> list[Finding]:
    if not server.warnings:
        return []
    return [_finding(
        "HM901", WARNING, "%d read(s) of the audit failed; some checks could not run" % len(server.warnings), "server",
        {"warnings": server.warnings},
        "See the messages in the evidence: usually missing Exchange permissions (View-Only Organization Management covers "
        "the reads), an event log the account cannot read, or a cmdlet missing on this Exchange version.", False)]


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def server_findings(facts: Mapping, options: Options | Mapping | None = None) -> list[Finding]:
    """Every finding for one server, most severe first, from certificate_info's facts of that server.

    The facts must list every certificate of the server (certificate_info without `thumbprints`).
    Raises ValueError for facts that are not a mapping and for invalid options.
    """
    server = _Server(facts, Options.of(options))
    findings: list[Finding] = []
    findings += _check_kb2888788(server)
    findings += _check_no_trusted(server)
    findings += _check_exo_certificates(server)
    findings += _check_connectors(server)
    findings += _check_certificates(server)
    findings += _check_internal_transport(server)
    findings += _check_tls(server)
    findings += _check_audit(server)
    # Mail flow last: whether it is critical depends on a cause found above.
    findings += _check_queue(server, findings)
    findings += _check_events(server, findings)
    return sort_findings(findings)


def hybrid_certificates(facts: Mapping) -> dict[tuple[str, str], dict]:
    """The hybrid certificate(s) of one server: {(issuer key, subject key): {"issuer", "subject"}}.

    The trusted certificates its cloud connectors present; when none is trusted, what they present. An
    untrusted certificate competing with a trusted one (HM101) is that server's problem, not a fleet
    inconsistency."""
    server = _Server(facts, Options())
    presented = {server.thumbprint(cert): cert for _kind, connector in server.enabled_connectors for cert in server.presented(connector)}
    trusted = [cert for cert in presented.values() if server.trusted(cert)]
    result = {}
    for cert in trusted or presented.values():
        key = (_name_key(cert.get("issuer")), _name_key(cert.get("subject")))
        result.setdefault(key, {"issuer": cert.get("issuer"), "subject": cert.get("subject")})
    return result


def fleet_findings(per_host_facts: Mapping[str, Mapping | None]) -> list[Finding]:
    """Findings across servers: the hybrid certificate (issuer + subject) must be the same on every hybrid
    transport server. Hosts without facts (failed, unreachable) are skipped."""
    return fleet_findings_of({host: hybrid_certificates(facts) for host, facts in per_host_facts.items() if isinstance(facts, Mapping)})


def fleet_findings_of(per_host_certificates: Mapping[str, Mapping]) -> list[Finding]:
    """fleet_findings() from each host's hybrid_certificates(), which a caller can collect host by host
    without keeping every host's facts. Linear in the number of hosts: each host's certificate set is a
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
                                          CERTIFICATE_REQUIREMENTS),
        False)]

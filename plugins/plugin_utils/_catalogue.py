# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The findings catalogue: every check's stable id (HMnnn), slug, severity and references, and the
Finding record the checks (_findings) produce. Data only; docs/findings.md is its long form.
Pure Python, no Ansible imports.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from . import _model

CRITICAL, WARNING, INFO = "critical", "warning", "info"
SEVERITIES = (CRITICAL, WARNING, INFO)
RANK = {CRITICAL: 0, WARNING: 1, INFO: 2}

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
HEALTHCHECKER = _HEALTHCHECKER
HC_CERTIFICATE = _HEALTHCHECKER + "CertificateCheck/"
HC_CLOUD_CONNECTOR = _HEALTHCHECKER + "CloudConnectorCheck/"
HC_EXO_CONNECTOR = _HEALTHCHECKER + "ExoConnectorCheck/"
HC_INTERNAL_TRANSPORT = _HEALTHCHECKER + "InternalTransportCertificateCheck/"
HC_TLS = _HEALTHCHECKER + "TLSConfigurationCheck/"

# Microsoft Learn, "Exchange Server support for ECC certificates" (from the April 2024 Hotfix Update).
ECC_OVERRIDE_ADVICE = (
    "Exchange uses an ECC certificate only with its ECC support enabled (Microsoft Learn, \"Exchange Server support for "
    "ECC certificates\"; CSS-Exchange HealthChecker checks it, aka.ms/HC-EccCertificateChange): the setting override "
    "New-SettingOverride -Name 'EnableECCCertificateSupport' -Component 'Global' -Section 'ECCCertificateSupport' "
    "-Parameters @('Enabled=true') -Reason 'ECC certificates', then Get-ExchangeDiagnosticInfo -Process "
    "Microsoft.Exchange.Directory.TopologyService -Component VariantConfiguration -Argument Refresh, and on builds from the "
    "November 2024 SU the string registry value EnableEccCertificateSupport = 1 under "
    "HKLM:\\SOFTWARE\\Microsoft\\ExchangeServer\\v15\\Diagnostics; restart the Exchange services, as the article "
    "describes. Or use a certificate with an RSA key.")

# ---------------------------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------------------------

# auto_fix values in the catalogue: when enforce mode (the planner, _plan.py) can remove such a finding.
# A finding's own auto_fix is the planner's answer for that server (_autofix: the finding is gone once
# the plan ran, under both readings of Enable-ExchangeCertificate). Enforce changes nothing on a server
# where a name Exchange Online checks has no trusted certificate at all, so "yes" and the conditions
# assume it is not blocked that way.
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
       "use or faces Exchange Online; unused certificates are info). When its renewal (same subject, valid longer, "
       "with its key) is already on the server, a warning that says to move to the renewal and retire this one.",
       (HC_CERTIFICATE, NEW_CERTIFICATE), "Certificate lifetime (< 60 / < 30 days)"),
    _c("HM302", "certificate-expired", CRITICAL,
       "Certificate has expired", AUTO_FIX_NO,
       "A certificate that does not face Exchange Online has expired: critical while it is in use (enabled for a "
       "service or named by a TlsCertificateName), a warning when its renewal is on the server, info when unused. "
       "Expired certificates facing Exchange Online are HM104, the internal transport one HM312.",
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
    _c("HM308", "ecc-certificate-without-ecc-support", WARNING,
       "An ECC certificate for Exchange Online needs Exchange's ECC support", AUTO_FIX_NO,
       "A certificate with an ECC key, which Exchange Online would accept for a name it checks on this server, is not "
       "enabled for SMTP, and Exchange's ECC certificate support (the setting override of Microsoft's \"Exchange Server "
       "support for ECC certificates\") is not known to be on: Enable-ExchangeCertificate fails there with "
       "KeyAlgorithmUnsupported, so enforcement does not enable it.",
       (ENABLE_CERTIFICATE, CERTIFICATE_REQUIREMENTS)),
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
    _c("HM404", "exchange-version-out-of-support", WARNING,
       "The Exchange version is out of support", AUTO_FIX_NO,
       "The server's Exchange version (Get-ExchangeServer AdminDisplayVersion) is past the end of its extended support "
       "on the day of the audit: Exchange 2007, 2010 and 2013, and Exchange 2016 and 2019 after 2025-10-14 (Microsoft "
       "lifecycle, as CSS-Exchange's HealthChecker dates them). It gets no security updates.",
       (HEALTHCHECKER,)),
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
CAUSES_OF_2004 = frozenset(
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
            "evidence": jsonable(self.evidence),
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


def jsonable(value):
    """A deep copy holding only JSON types (tuples -> lists, datetimes -> ISO, anything else -> str)."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(item) for item in value]
        return sorted(items, key=json.dumps) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, datetime.datetime):
        return _model.iso_utc(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def sort_key(finding: Finding):
    return (RANK.get(finding.severity, 9), finding.id, finding.subject)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=sort_key)

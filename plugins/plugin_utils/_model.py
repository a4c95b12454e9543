# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Typed records of what runner.ps1 returns, and X.509 facts parsed from certificates' RawData.

The runner has already converted every value (docs/wire-contract.md): dates are ISO-8601 UTC strings,
flag enums are strings such as "IMAP, POP, IIS, SMTP", byte arrays are base64, other objects are
their ToString(). This module turns one converted object into one frozen record; it does no I/O and
imports nothing from Ansible.

Exchange's own view of a certificate (Status, RootCAType, IsSelfSigned ...) is kept as reported, but
the facts that decide trust are parsed from the DER in RawData with `cryptography`: over remote
PowerShell some reported properties can be missing, and Exchange's opinion is not proof.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import functools
import hashlib
import re
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.utils import CryptographyDeprecationWarning
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
except ImportError as exc:  # pragma: no cover - ansible-core requires cryptography on every controller
    # Only ansible-test's import sanity environment lacks it; certificate parsing reports this error.
    CRYPTOGRAPHY_IMPORT_ERROR: ImportError | None = exc
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

UTC = datetime.timezone.utc

# Exchange Online's routing domain of a tenant: <tenant>.mail.onmicrosoft.com.
CLOUD_ROUTING_SUFFIX = ".mail.onmicrosoft.com"
# Exchange Online Protection's inbound hosts: <domain>.mail.protection.outlook.com.
EOP_SMART_HOST_SUFFIX = ".mail.protection.outlook.com"
AUTH_CERTIFICATE_SUBJECT = "CN=Microsoft Exchange Server Auth Certificate"

# ---------------------------------------------------------------------------------------------
# Converted wire values -> Python values
# ---------------------------------------------------------------------------------------------


def parse_utc(value) -> datetime.datetime | None:
    """An ISO-8601 date as the runner sends it ("2026-01-31T12:00:00Z") -> aware UTC datetime.

    None when absent or not a date: a record with one unreadable date is still worth reporting.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        # The runner converts every date to UTC; a missing designator still means UTC.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_flags(value) -> frozenset[str]:
    """A flags enum converted by ToString ("IMAP, POP, IIS, SMTP"; zero is "None") -> its names."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    return frozenset(name for name in (str(item).strip() for item in items) if name and name != "None")


def iso_utc(value: datetime.datetime | None) -> str | None:
    """The one timestamp form of facts, records and reports: 2026-12-02T21:23:07Z (UTC, seconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def server_name_key(name) -> str:
    """Server names in connector and hybrid configuration lists may be short names or FQDNs, in any case."""
    return (name or "").split(".")[0].strip().lower()


# Exchange versions and the end of extended support: microsoft/CSS-Exchange,
# Shared/Get-ExchangeBuildVersionInformation.ps1 (used by Diagnostics/HealthChecker): 15.0 = 2013
# (until 2023-04-11), 15.1 = 2016 and 15.2 below build 2562 = 2019 (until 2025-10-14), 15.2 build 2562
# and later = Subscription Edition. 14.x = 2010 (extended support ended 2020-10-13, Microsoft lifecycle).
# (major.minor, first build) -> product; checked in order, first match wins.
_PRODUCTS = (
    ((15, 2), 2562, "Exchange Server SE"),
    ((15, 2), 0, "Exchange Server 2019"),
    ((15, 1), 0, "Exchange Server 2016"),
    ((15, 0), 0, "Exchange Server 2013"),
    ((14, None), 0, "Exchange Server 2010"),
    ((8, None), 0, "Exchange Server 2007"),
)
END_OF_SUPPORT = {
    "Exchange Server 2007": datetime.date(2017, 4, 11),
    "Exchange Server 2010": datetime.date(2020, 10, 13),
    "Exchange Server 2013": datetime.date(2023, 4, 11),
    "Exchange Server 2016": datetime.date(2025, 10, 14),
    "Exchange Server 2019": datetime.date(2025, 10, 14),
    "Exchange Server SE": datetime.date(2035, 12, 31),  # HealthChecker's date; SE follows the Modern Lifecycle
}
_VERSION_RE = re.compile(r"Version\s+(\d+)\.(\d+)\s*\(Build\s+(\d+)\.(\d+)\)", re.IGNORECASE)
_DOTTED_RE = re.compile(r"\A\s*(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?")


def exchange_product(admin_display_version) -> tuple:
    """AdminDisplayVersion ("Version 15.2 (Build 1544.4)", or a dotted "15.2.1544.4") -> (product, build)."""
    text = str(admin_display_version or "")
    match = _VERSION_RE.search(text)
    if match:
        major, minor, build = int(match.group(1)), int(match.group(2)), int(match.group(3))
        dotted = "%d.%d.%s.%s" % (major, minor, match.group(3), match.group(4))
    else:
        match = _DOTTED_RE.match(text)
        if not match:
            return None, None
        major, minor, build = int(match.group(1)), int(match.group(2)), int(match.group(3))
        dotted = ".".join(group for group in match.groups() if group is not None)
    for (want_major, want_minor), first_build, product in _PRODUCTS:
        if major == want_major and (want_minor is None or minor == want_minor) and build >= first_build:
            return product, dotted
    return None, dotted


def out_of_support(admin_display_version, today: datetime.date) -> tuple | None:
    """(product, build, end of extended support) when the version's support ended before today, else None
    (supported, or not recognised)."""
    product, build = exchange_product(admin_display_version)
    end = END_OF_SUPPORT.get(product) if product else None
    return (product, build, end) if end is not None and today > end else None


# Exchange's ECC certificate support, as CSS-Exchange HealthChecker judges it (Analyzer/Security/
# Invoke-AnalyzerSecurityOverrides.ps1 with Get-FilteredSettingOverrideInformation.ps1, and
# DataCollection/ExchangeInformation/Get-ExchangeRegistryValues.ps1): a setting override with ComponentName Global,
# SectionName ECCCertificateSupport and the parameter Enabled=true that applies to the server, and, from the
# November 2024 SU on, the string registry value EnableEccCertificateSupport = 1 (HealthChecker: override without
# it is "No longer fully enabled", aka.ms/HC-EccCertificateChange).
ECC_OVERRIDE_COMPONENT = "Global"
ECC_OVERRIDE_SECTION = "ECCCertificateSupport"
ECC_REGISTRY_VALUE = r"HKLM\SOFTWARE\Microsoft\ExchangeServer\v15\Diagnostics\EnableEccCertificateSupport"


def ecc_override_applies(setting_overrides, server_name) -> bool:
    """Whether a Get-SettingOverride object turns ECC support on for this server: Global/ECCCertificateSupport,
    Enabled=true, Server empty or naming it, Status Accepted when the object says (HealthChecker's filter)."""
    own = server_name_key(server_name)
    for override in setting_overrides or ():
        if not isinstance(override, Mapping):
            continue
        parameters = override.get("Parameters") or ()
        parameters = [parameters] if isinstance(parameters, str) else parameters
        servers = override.get("Server") or ()
        servers = [servers] if isinstance(servers, str) else servers
        status = str(override.get("Status") or "Accepted")
        if (str(override.get("ComponentName") or "").casefold() == ECC_OVERRIDE_COMPONENT.casefold()
                and str(override.get("SectionName") or "").casefold() == ECC_OVERRIDE_SECTION.casefold()
                and any("".join(str(p).split()).casefold() == "enabled=true" for p in parameters)
                and status.casefold() == "accepted"
                and (not servers or own in {server_name_key(s) for s in servers})):
            return True
    return False


def ecc_support(setting_overrides, tls_state, server_name, is_edge: bool) -> tuple:
    """(True | False | None, why) for Exchange's ECC certificate support on this server. setting_overrides:
    Get-SettingOverride objects, None when not read; tls_state: runner.ps1's Get-HybridmailTlsState object, whose
    EccCertificateSupport is the registry value (True, False, None when absent), None when not read."""
    if is_edge:
        return None, ("whether Exchange's ECC certificate support is enabled on this Edge Transport server is unknown "
                      "(Edge has no setting overrides; the audit does not judge Edge)")
    if setting_overrides is None:
        return None, ("whether Exchange's ECC certificate support is enabled on this server is unknown (the audit could "
                      "not read the setting overrides)")
    if not ecc_override_applies(setting_overrides, server_name):
        return False, ("Exchange's ECC certificate support is not enabled on this server (no %s setting override with "
                       "Enabled=true applies to it)" % ECC_OVERRIDE_SECTION)
    if not isinstance(tls_state, Mapping):
        return None, ("whether Exchange's ECC certificate support is fully enabled on this server is unknown (the %s "
                      "setting override applies; the registry value %s could not be read)" % (ECC_OVERRIDE_SECTION, ECC_REGISTRY_VALUE))
    if tls_state.get("EccCertificateSupport") is not True:
        return False, ("Exchange's ECC certificate support is not fully enabled on this server (the %s setting override "
                       "applies, but the registry value %s is not 1, which builds from the November 2024 SU need)"
                       % (ECC_OVERRIDE_SECTION, ECC_REGISTRY_VALUE))
    return True, "Exchange's ECC certificate support is enabled on this server"


def normalize_thumbprint(value) -> str:
    """Upper-case hex without the spaces or colons that copies from certificate dialogs carry."""
    return "".join(str(value or "").split()).replace(":", "").upper()


def _text(value) -> str | None:
    """A string property; an empty string means "not set" for every property we read."""
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None


def _flag(value) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    lowered = str(value).strip().lower()
    return {"true": True, "false": False}.get(lowered)


def _count(value) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _items(value) -> tuple[str, ...]:
    """A multi-valued property (a JSON array) -> strings; a lone string is one item, never split."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(item) for item in value if item is not None and str(item).strip())
    return (str(value),) if str(value).strip() else ()


# ---------------------------------------------------------------------------------------------
# X.509 names
# ---------------------------------------------------------------------------------------------

# Tables are keyed by dotted OID strings, so that importing this module needs no cryptography.
# The key names Windows CryptoAPI prints for a name (CertNameToStr, CERT_X500_NAME_STR), which is what
# .NET's X509Certificate2.Subject/Issuer and therefore Exchange show. Attributes missing here are
# printed as "OID.<dotted>", as Windows does (e.g. "OID.2.5.4.15=Private Organization" in EV subjects).
_WINDOWS_NAME_KEYS = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "SERIALNUMBER",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "S",
    "2.5.4.9": "STREET",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "T",
    "2.5.4.42": "G",
    "2.5.4.43": "I",
    "1.2.840.113549.1.9.1": "E",
    "0.9.2342.19200300.100.1.25": "DC",
    "2.5.4.17": "PostalCode",
    "2.5.4.46": "dnQualifier",
    "2.5.4.13": "Description",
    "2.5.4.18": "POBox",
    "2.5.4.20": "Phone",
    "1.2.840.113549.1.9.2": "UnstructuredName",
    "1.2.840.113549.1.9.8": "UnstructuredAddress",
}

# CertNameToStr encloses a value in double quotes when it is empty, has leading or trailing white
# space or one of these characters; a double quote inside is doubled.
_WINDOWS_QUOTE_TRIGGERS = frozenset(',+="\r\n<>#;')


def _windows_value(value) -> str:
    if isinstance(value, bytes):
        # Only BIT STRING attributes (x500UniqueIdentifier) are bytes. Windows formats such values "in
        # hexadecimal"; the exact form is unverified and such names do not occur on SMTP certificates.
        return "#" + value.hex().upper()
    if not value or value != value.strip() or _WINDOWS_QUOTE_TRIGGERS.intersection(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def windows_name(name: x509.Name) -> str:
    """The form Exchange shows and writes into TlsCertificateName: "CN=mail.contoso.com, O=Contoso, C=US".

    Most specific RDN first (CERT_NAME_STR_REVERSE_FLAG), RDNs joined by ", ", the attributes of a
    multi-valued RDN joined by " + ".
    """
    rdns = []
    for rdn in reversed(name.rdns):
        rdns.append(
            " + ".join(
                "%s=%s" % (_WINDOWS_NAME_KEYS.get(attribute.oid.dotted_string, "OID." + attribute.oid.dotted_string), _windows_value(attribute.value))
                for attribute in rdn
            )
        )
    return ", ".join(rdns)


# ---------------------------------------------------------------------------------------------
# X.509 facts
# ---------------------------------------------------------------------------------------------

_EKU_NAMES = {
    "1.3.6.1.5.5.7.3.1": "serverAuth",
    "1.3.6.1.5.5.7.3.2": "clientAuth",
    "1.3.6.1.5.5.7.3.3": "codeSigning",
    "1.3.6.1.5.5.7.3.4": "emailProtection",
    "1.3.6.1.5.5.7.3.8": "timeStamping",
    "1.3.6.1.5.5.7.3.9": "OCSPSigning",
    "2.5.29.37.0": "anyExtendedKeyUsage",
}

# Signature algorithms cryptography cannot name a hash for, but which a report must still call weak.
_LEGACY_SIGNATURE_HASHES = {
    "1.2.840.113549.1.1.2": "md2",
    "1.2.840.113549.1.1.3": "md4",
}


@dataclass(frozen=True)
class X509Facts:
    """What the DER of a certificate says, independent of Exchange's reporting."""

    cert: x509.Certificate = field(repr=False, compare=False)  # for path validation
    thumbprint: str  # SHA-1 of the DER, upper-case hex: what Windows calls the thumbprint
    serial: str  # upper-case hex
    subject: str  # RFC 4514
    issuer: str  # RFC 4514
    subject_windows: str  # as Exchange shows it, see windows_name()
    issuer_windows: str
    subject_cn: str | None  # the most specific CN
    dns_names: tuple[str, ...]  # DNS subjectAltNames
    not_before: datetime.datetime  # aware UTC
    not_after: datetime.datetime  # aware UTC
    key_type: str  # RSA, EC, DSA, Ed25519, Ed448, or "unsupported"
    key_bits: int | None  # RSA/DSA modulus bits, EC curve size; None for an unsupported key
    signature_hash: str | None  # md5, sha1, sha256 ...; None for Ed25519/Ed448 or an unknown algorithm
    ekus: tuple[str, ...] | None  # None when the extension is absent (any use allowed)
    is_ca: bool
    subject_key_id: str | None  # upper-case hex
    authority_key_id: str | None  # upper-case hex
    self_signed: bool  # issuer == subject and the signature verifies with the certificate's own key


def sha1_thumbprint(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(Encoding.DER)).hexdigest().upper()


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether issuer's key made cert's signature (and the names chain).

    Not cert.verify_directly_issued_by(): that refuses SHA-1 and MD5 signatures, which a diagnosis
    must still be able to follow to tell "weak signature" from "unknown root".
    """
    if cert.issuer != issuer.subject:
        return False
    try:
        key = issuer.public_key()
        signature, data = cert.signature, cert.tbs_certificate_bytes
        # cryptography names no parameters for legacy algorithms (md5WithRSAEncryption ...); those
        # are all PKCS#1 v1.5 or plain ECDSA over the named hash.
        parameters = cert.signature_algorithm_parameters
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, parameters or padding.PKCS1v15(), cert.signature_hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, parameters or ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, cert.signature_hash_algorithm)
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        # TypeError/ValueError: the signature algorithm does not fit the issuer's key type.
        return False
    return True


def _key_facts(cert: x509.Certificate) -> tuple[str, int | None]:
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return "unsupported", None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return "unsupported", None


def _signature_hash(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return _LEGACY_SIGNATURE_HASHES.get(cert.signature_algorithm_oid.dotted_string)
    return None if algorithm is None else algorithm.name


def _extension(cert: x509.Certificate, kind):
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex().upper()


@contextlib.contextmanager
def quiet_certificate_loading():
    """Silence cryptography's deprecation warning for non-positive serial numbers (raised when the
    serial is read): real roots and Exchange certificates have them, and the warning would reach every
    playbook's output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


# What cryptography raises for a certificate it cannot read: ValueError for most defects, TypeError
# for some malformed names, and exception types of their own for others.
CERTIFICATE_READ_ERRORS: tuple = (ValueError, TypeError)
if CRYPTOGRAPHY_IMPORT_ERROR is None:
    CERTIFICATE_READ_ERRORS += (UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


# A server's answer names the same certificates more than once (a certificate and its chain, the
# intermediate and root of every chain): each DER is read, and its self-signature checked, once per process.
@functools.lru_cache(maxsize=256)
def parse_x509(der: bytes) -> X509Facts:
    """Facts of one DER certificate. Raises ValueError when the DER is not a certificate we can read."""
    if CRYPTOGRAPHY_IMPORT_ERROR is not None:
        raise ValueError("reading certificates needs the Python package cryptography: %s" % CRYPTOGRAPHY_IMPORT_ERROR)
    try:
        with quiet_certificate_loading():
            return _read_facts(der)
    except CERTIFICATE_READ_ERRORS as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None


def _read_facts(der: bytes) -> X509Facts:
    cert = x509.load_der_x509_certificate(der)
    common_names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    san = _extension(cert, x509.SubjectAlternativeName)
    eku = _extension(cert, x509.ExtendedKeyUsage)
    basic_constraints = _extension(cert, x509.BasicConstraints)
    ski = _extension(cert, x509.SubjectKeyIdentifier)
    aki = _extension(cert, x509.AuthorityKeyIdentifier)
    key_type, key_bits = _key_facts(cert)
    return X509Facts(
        cert=cert,
        thumbprint=hashlib.sha1(der).hexdigest().upper(),
        serial="%X" % cert.serial_number,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        subject_windows=windows_name(cert.subject),
        issuer_windows=windows_name(cert.issuer),
        # DER lists the most general RDN first, so the last CN is the most specific one.
        subject_cn=str(common_names[-1].value) if common_names else None,
        dns_names=tuple(san.get_values_for_type(x509.DNSName)) if san is not None else (),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_bits=key_bits,
        signature_hash=_signature_hash(cert),
        ekus=None if eku is None else tuple(_EKU_NAMES.get(oid.dotted_string, oid.dotted_string) for oid in eku),
        is_ca=basic_constraints is not None and basic_constraints.ca,
        subject_key_id=_hex(ski.digest if ski is not None else None),
        authority_key_id=_hex(aki.key_identifier if aki is not None else None),
        self_signed=cert.issuer == cert.subject and signed_by(cert, cert),
    )


def parse_x509_base64(text) -> X509Facts:
    """parse_x509 of a base64 RawData value. Raises ValueError for anything that is not one."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("RawData is missing")
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("RawData is not base64: %s" % exc) from None
    try:
        return parse_x509(der)
    except ValueError as exc:
        raise ValueError("RawData is not a readable X.509 certificate: %s" % exc) from None


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """One Get-ExchangeCertificate object: Exchange's report plus the facts parsed from RawData."""

    thumbprint: str  # as reported (normalized); the recomputed one when Exchange did not report it
    friendly_name: str | None
    services: frozenset[str]  # e.g. {"IIS", "SMTP"}; empty for "None"
    status: str | None  # Exchange's opinion: Valid, Untrusted, DateInvalid ...
    root_ca_type: str | None  # Exchange's opinion: Registry, ThirdParty, Enterprise ...
    has_private_key: bool | None
    is_self_signed: bool | None  # as reported; x509.self_signed is the parsed fact
    certificate_domains: tuple[str, ...]
    reported_subject: str | None  # .NET form, as TlsCertificateName quotes it
    reported_issuer: str | None
    x509: X509Facts | None  # None when RawData could not be parsed
    parse_error: str | None  # why this certificate's RawData cannot be relied on

    @property
    def is_auth_certificate(self) -> bool:
        """The Exchange Server Auth (OAuth) certificate, which nothing here may ever touch."""
        subject = self.reported_subject or (self.x509.subject_windows if self.x509 else "")
        return subject.strip().lower() == AUTH_CERTIFICATE_SUBJECT.lower()

    @classmethod
    def from_object(cls, obj: Mapping) -> Certificate:
        reported_thumbprint = normalize_thumbprint(obj.get("Thumbprint"))
        try:
            facts = parse_x509_base64(obj.get("RawData"))
            parse_error = None
        except ValueError as exc:
            facts, parse_error = None, str(exc)
        thumbprint = reported_thumbprint or (facts.thumbprint if facts is not None else "")
        if facts is not None and facts.thumbprint != thumbprint:
            # The facts stay as evidence, but nothing may vouch for a certificate whose bytes are
            # not the ones Exchange named.
            parse_error = "RawData hashes to thumbprint %s, not to the reported %s" % (facts.thumbprint, thumbprint)
        return cls(
            thumbprint=thumbprint,
            friendly_name=_text(obj.get("FriendlyName")),
            services=parse_flags(obj.get("Services")),
            status=_text(obj.get("Status")),
            root_ca_type=_text(obj.get("RootCAType")),
            has_private_key=_flag(obj.get("HasPrivateKey")),
            is_self_signed=_flag(obj.get("IsSelfSigned")),
            certificate_domains=_items(obj.get("CertificateDomains")),
            reported_subject=_text(obj.get("Subject")),
            reported_issuer=_text(obj.get("Issuer")),
            x509=facts,
            parse_error=parse_error,
        )


@dataclass(frozen=True)
class CertificateChain:
    """One Get-HybridmailCertificateChain object: the chain Windows builds for a certificate in
    Cert:\\LocalMachine\\My from the server's own stores, i.e. what the server can send."""

    thumbprint: str
    chain_thumbprints: tuple[str, ...]  # leaf first
    certificates: tuple[x509.Certificate, ...] = field(repr=False)  # same order; unreadable ones left out
    chain_status: frozenset[str]  # X509ChainStatusFlags names, e.g. {"UntrustedRoot"}
    parse_error: str | None

    @classmethod
    def from_object(cls, obj: Mapping) -> CertificateChain:
        certificates, errors = [], []
        for position, text in enumerate(_items(obj.get("ChainRawData"))):
            try:
                certificates.append(parse_x509_base64(text).cert)
            except ValueError as exc:
                errors.append("chain element %d: %s" % (position, exc))
        return cls(
            thumbprint=normalize_thumbprint(obj.get("Thumbprint")),
            chain_thumbprints=tuple(normalize_thumbprint(item) for item in _items(obj.get("ChainThumbprints"))),
            certificates=tuple(certificates),
            chain_status=parse_flags(obj.get("ChainStatus")),
            parse_error="; ".join(errors) or None,
        )


@dataclass(frozen=True)
class ExchangeServer:
    name: str | None
    fqdn: str | None
    version: str | None  # AdminDisplayVersion, e.g. "Version 15.2 (Build 1544.4)"
    roles: frozenset[str]  # ServerRole flags, e.g. {"Mailbox"} or {"Edge"}
    edition: str | None
    is_edge: bool
    site: str | None

    @classmethod
    def from_object(cls, obj: Mapping) -> ExchangeServer:
        roles = parse_flags(obj.get("ServerRole"))
        return cls(
            name=_text(obj.get("Name")),
            fqdn=_text(obj.get("Fqdn")),
            version=_text(obj.get("AdminDisplayVersion")),
            roles=roles,
            edition=_text(obj.get("Edition")),
            is_edge=bool(_flag(obj.get("IsEdgeServer"))) or "Edge" in roles,
            site=_text(obj.get("Site")),
        )


@dataclass(frozen=True)
class TransportService:
    name: str | None
    internal_transport_certificate_thumbprint: str | None

    @classmethod
    def from_object(cls, obj: Mapping) -> TransportService:
        thumbprint = normalize_thumbprint(obj.get("InternalTransportCertificateThumbprint"))
        return cls(name=_text(obj.get("Name")), internal_transport_certificate_thumbprint=thumbprint or None)


def _domain_key(domain: str | None) -> str:
    return (domain or "").strip().rstrip(".").lower()


@dataclass(frozen=True)
class AddressSpace:
    """A send connector address space, "SMTP:contoso.mail.onmicrosoft.com;1" as ToString() gives it."""

    type: str  # SMTP, X400 ...
    domain: str  # "contoso.com", "*.contoso.com" or "*"
    cost: int | None

    @classmethod
    def parse(cls, text: str) -> AddressSpace:
        kind, separator, rest = text.strip().partition(":")
        if not separator:
            # A bare domain is how admins type SMTP address spaces.
            kind, rest = "SMTP", text.strip()
        domain, separator, cost = rest.rpartition(";")
        if not separator or not cost.strip().isdigit():
            domain, cost = rest, ""
        return cls(type=kind.strip().upper(), domain=domain.strip(), cost=int(cost) if cost else None)

    def covers(self, domain: str) -> bool:
        """Exchange's address space semantics: "*" is every domain, "*.contoso.com" is contoso.com and
        all its subdomains, anything else is that one domain."""
        if self.type != "SMTP":
            return False
        wanted, space = _domain_key(domain), _domain_key(self.domain)
        if space == "*":
            return True
        if space.startswith("*."):
            return wanted == space[2:] or wanted.endswith(space[1:])
        return wanted == space


@dataclass(frozen=True)
class SendConnector:
    identity: str | None
    name: str | None
    enabled: bool | None
    fqdn: str | None
    address_spaces: tuple[AddressSpace, ...]
    source_transport_servers: tuple[str, ...]
    smart_hosts: tuple[str, ...]
    dns_routing_enabled: bool | None
    cloud_services_mail_enabled: bool | None
    require_tls: bool | None
    tls_auth_level: str | None
    tls_domain: str | None
    tls_certificate_name: str | None  # raw "<I>issuer<S>subject"; see parse_tls_certificate_name()

    @property
    def is_cloud(self) -> bool:
        """Whether this connector carries mail to Exchange Online: the Hybrid Configuration Wizard's
        connector sets CloudServicesMailEnabled and routes <tenant>.mail.onmicrosoft.com; either one
        is enough, because admins re-create such connectors by hand and miss one or the other. A
        connector relaying through an Exchange Online Protection smart host counts too, as HealthChecker
        counts it ("Detect Send Connector sending to EXO", CSS-Exchange
        Diagnostics/HealthChecker/Analyzer/Invoke-AnalyzerFrequentConfigurationIssues.ps1): it presents
        its certificate to Exchange Online like the wizard's connector."""
        return bool(self.cloud_services_mail_enabled) or any(
            space.type == "SMTP" and _domain_key(space.domain).endswith(CLOUD_ROUTING_SUFFIX) for space in self.address_spaces
        ) or any(_domain_key(host).endswith(EOP_SMART_HOST_SUFFIX) for host in self.smart_hosts)

    @classmethod
    def from_object(cls, obj: Mapping) -> SendConnector:
        return cls(
            identity=_text(obj.get("Identity")),
            name=_text(obj.get("Name")),
            enabled=_flag(obj.get("Enabled")),
            fqdn=_text(obj.get("Fqdn")),
            address_spaces=tuple(AddressSpace.parse(text) for text in _items(obj.get("AddressSpaces"))),
            source_transport_servers=_items(obj.get("SourceTransportServers")),
            smart_hosts=_items(obj.get("SmartHosts")),
            dns_routing_enabled=_flag(obj.get("DNSRoutingEnabled")),
            cloud_services_mail_enabled=_flag(obj.get("CloudServicesMailEnabled")),
            require_tls=_flag(obj.get("RequireTLS")),
            tls_auth_level=_text(obj.get("TlsAuthLevel")),
            tls_domain=_text(obj.get("TlsDomain")),
            tls_certificate_name=_text(obj.get("TlsCertificateName")),
        )


@dataclass(frozen=True)
class ReceiveConnector:
    identity: str | None
    name: str | None
    server: str | None
    enabled: bool | None
    fqdn: str | None
    bindings: tuple[str, ...]
    transport_role: str | None
    require_tls: bool | None
    auth_mechanism: frozenset[str]  # flags, e.g. {"Tls", "Integrated", "ExchangeServer"}
    tls_certificate_name: str | None
    tls_domain_capabilities: tuple[str, ...]  # e.g. "mail.protection.outlook.com:AcceptCloudServicesMail"

    @property
    def accepts_cloud_services_mail(self) -> bool:
        return any("AcceptCloudServicesMail" in capability for capability in self.tls_domain_capabilities)

    @classmethod
    def from_object(cls, obj: Mapping) -> ReceiveConnector:
        return cls(
            identity=_text(obj.get("Identity")),
            name=_text(obj.get("Name")),
            server=_text(obj.get("Server")),
            enabled=_flag(obj.get("Enabled")),
            fqdn=_text(obj.get("Fqdn")),
            bindings=_items(obj.get("Bindings")),
            transport_role=_text(obj.get("TransportRole")),
            require_tls=_flag(obj.get("RequireTLS")),
            auth_mechanism=parse_flags(obj.get("AuthMechanism")),
            tls_certificate_name=_text(obj.get("TlsCertificateName")),
            tls_domain_capabilities=_items(obj.get("TlsDomainCapabilities")),
        )


@dataclass(frozen=True)
class HybridConfiguration:
    tls_certificate_name: str | None
    sending_transport_servers: tuple[str, ...]
    receiving_transport_servers: tuple[str, ...]
    edge_transport_servers: tuple[str, ...]
    domains: tuple[str, ...]
    on_premises_smart_host: str | None
    features: tuple[str, ...]

    @classmethod
    def from_object(cls, obj: Mapping) -> HybridConfiguration:
        return cls(
            tls_certificate_name=_text(obj.get("TlsCertificateName")),
            sending_transport_servers=_items(obj.get("SendingTransportServers")),
            receiving_transport_servers=_items(obj.get("ReceivingTransportServers")),
            edge_transport_servers=_items(obj.get("EdgeTransportServers")),
            domains=_items(obj.get("Domains")),
            on_premises_smart_host=_text(obj.get("OnPremisesSmartHost")),
            features=_items(obj.get("Features")),
        )


# The untranslated parts of the KB 2888788 event text: the SMTP reply and the chain status name.
# The prose around them is localized (en, de, cs ...), so it is never matched.
UNTRUSTED_ROOT_TOKENS = ("454 4.7.0", "UntrustedRoot")


@dataclass(frozen=True)
class TransportEvent:
    event_id: int | None
    provider_name: str | None
    time_created: datetime.datetime | None
    level: str | None  # LevelDisplayName, localized
    machine_name: str | None
    message: str | None

    @property
    def is_untrusted_root_2004(self) -> bool:
        """Whether this is the KB 2888788 event: Id 2004 from MSExchangeTransport whose text carries
        the SMTP reply 454 4.7.0 (TLS channel refused) or the chain status UntrustedRoot."""
        if self.event_id != 2004 or (self.provider_name or "").lower() != "msexchangetransport":
            return False
        # Collapse line breaks and runs of spaces that event rendering may put inside the reply.
        message = " ".join((self.message or "").split())
        return any(token.lower() in message.lower() for token in UNTRUSTED_ROOT_TOKENS)

    @classmethod
    def from_object(cls, obj: Mapping) -> TransportEvent:
        return cls(
            event_id=_count(obj.get("Id")),
            provider_name=_text(obj.get("ProviderName")),
            time_created=parse_utc(obj.get("TimeCreated")),
            level=_text(obj.get("LevelDisplayName")),
            machine_name=_text(obj.get("MachineName")),
            message=_text(obj.get("Message")),
        )


@dataclass(frozen=True)
class QueueInfo:
    identity: str | None
    delivery_type: str | None
    next_hop_domain: str | None
    next_hop_connector: str | None
    status: str | None
    message_count: int | None
    last_error: str | None
    last_retry_time: datetime.datetime | None
    next_retry_time: datetime.datetime | None

    def is_to_exchange_online(self, send_connectors: Iterable[SendConnector]) -> bool:
        """Whether this queue delivers to Exchange Online: its next hop is a tenant routing domain,
        or a domain that one of the cloud send connectors routes."""
        domain = _domain_key(self.next_hop_domain)
        if not domain:
            return False
        if domain.endswith(CLOUD_ROUTING_SUFFIX):
            return True
        return any(space.covers(domain) for connector in send_connectors if connector.is_cloud for space in connector.address_spaces)

    @classmethod
    def from_object(cls, obj: Mapping) -> QueueInfo:
        return cls(
            identity=_text(obj.get("Identity")),
            delivery_type=_text(obj.get("DeliveryType")),
            next_hop_domain=_text(obj.get("NextHopDomain")),
            next_hop_connector=_text(obj.get("NextHopConnector")),
            status=_text(obj.get("Status")),
            message_count=_count(obj.get("MessageCount")),
            last_error=_text(obj.get("LastError")),
            last_retry_time=parse_utc(obj.get("LastRetryTime")),
            next_retry_time=parse_utc(obj.get("NextRetryTime")),
        )


# ---------------------------------------------------------------------------------------------
# TlsCertificateName
# ---------------------------------------------------------------------------------------------


class TlsCertificateName(NamedTuple):
    issuer: str
    subject: str


_ISSUER_TAG, _SUBJECT_TAG = "<I>", "<S>"


def _subject_tag_positions(text: str) -> list[int]:
    """Where "<S>" occurs outside double quotes: Windows quotes any name value containing "<" or ">",
    so a quoted "<S>" belongs to a name and is not the separator."""
    if '"' not in text:  # the usual case: nothing is quoted
        positions, index = [], text.find(_SUBJECT_TAG)
        while index >= 0:
            positions.append(index)
            index = text.find(_SUBJECT_TAG, index + len(_SUBJECT_TAG))
        return positions
    positions, quoted, index = [], False, 0
    while index < len(text):
        if text[index] == '"':
            quoted = not quoted
        elif not quoted and text.startswith(_SUBJECT_TAG, index):
            positions.append(index)
            index += len(_SUBJECT_TAG)
            continue
        index += 1
    return positions


def _split_tls_certificate_name(text) -> tuple[TlsCertificateName | None, str | None]:
    """(name, None) when well formed, (None, reason) when malformed, (None, None) when not set."""
    if text is None or not str(text).strip():
        return None, None
    text = str(text).strip()
    if not text.startswith(_ISSUER_TAG):
        return None, "does not start with %s" % _ISSUER_TAG
    body = text[len(_ISSUER_TAG) :]
    positions = _subject_tag_positions(body)
    if not positions:
        return None, "has no %s separating issuer and subject" % _SUBJECT_TAG
    if len(positions) > 1:
        return None, "has more than one %s" % _SUBJECT_TAG
    issuer, subject = body[: positions[0]].strip(), body[positions[0] + len(_SUBJECT_TAG) :].strip()
    if not issuer:
        return None, "has an empty issuer"
    if not subject:
        return None, "has an empty subject"
    return TlsCertificateName(issuer=issuer, subject=subject), None


def parse_tls_certificate_name(text) -> TlsCertificateName | None:
    """ "<I>issuer<S>subject" -> (issuer, subject); None when unset or malformed
    (tls_certificate_name_problem() says why)."""
    return _split_tls_certificate_name(text)[0]


def tls_certificate_name_problem(text) -> str | None:
    """Why a TlsCertificateName value is malformed; None when it is well formed or unset."""
    return _split_tls_certificate_name(text)[1]


def format_tls_certificate_name(issuer: str, subject: str) -> str:
    """The value Exchange expects, built as Microsoft's scripts do: "<I>$($c.Issuer)<S>$($c.Subject)"."""
    return "%s%s%s%s" % (_ISSUER_TAG, issuer, _SUBJECT_TAG, subject)


def tls_certificate_name_of(certificate: Certificate) -> str | None:
    """The TlsCertificateName that selects this certificate, from Exchange's own Issuer/Subject text
    when reported, otherwise from the parsed names."""
    if certificate.reported_issuer and certificate.reported_subject:
        return format_tls_certificate_name(certificate.reported_issuer, certificate.reported_subject)
    if certificate.x509 is not None:
        return format_tls_certificate_name(certificate.x509.issuer_windows, certificate.x509.subject_windows)
    return None


def _issuer_subject_forms(certificate: Certificate) -> set[tuple[str, str]]:
    forms = set()
    if certificate.reported_issuer and certificate.reported_subject:
        forms.add((certificate.reported_issuer.casefold(), certificate.reported_subject.casefold()))
    if certificate.x509 is not None:
        forms.add((certificate.x509.issuer_windows.casefold(), certificate.x509.subject_windows.casefold()))
    return forms


def tls_name_selects(tls_name: TlsCertificateName, certificate: Certificate) -> bool:
    """Whether a TlsCertificateName names this certificate.

    Compared as whole strings, case-insensitively, the way Microsoft's HealthChecker compares them
    (PowerShell -eq). Both Exchange's reported text and the form computed from the DER are tried, so
    a certificate whose Subject/Issuer were lost over remote PowerShell still matches.
    """
    return (tls_name.issuer.casefold(), tls_name.subject.casefold()) in _issuer_subject_forms(certificate)


_OLDEST = datetime.datetime.min.replace(tzinfo=UTC)


def certificates_matching_tls_name(tls_name: TlsCertificateName, certificates: Iterable[Certificate]) -> tuple[Certificate, ...]:
    """The certificates a TlsCertificateName selects, latest expiry first: when several match, Exchange
    uses the one that expires last, so the first one is the certificate transport presents.

    Services and private key are deliberately not checked here: a match that is not enabled for SMTP
    is its own finding (KB 4051498, "UnknownCredentials").
    """
    matches = [certificate for certificate in certificates if tls_name_selects(tls_name, certificate)]
    return tuple(
        sorted(
            matches,
            key=lambda certificate: (certificate.x509.not_after if certificate.x509 else _OLDEST, certificate.thumbprint),
            reverse=True,
        )
    )


# ---------------------------------------------------------------------------------------------
# Host names
# ---------------------------------------------------------------------------------------------


def dns_name_matches(pattern: str, fqdn: str) -> bool:
    """Whether a presented DNS identifier covers a host name (RFC 6125 6.4, narrowed as RFC 9525 does).

    Case-insensitive; a trailing dot is ignored. A wildcard is only a whole left-most label "*" and
    stands for exactly one label: "*.contoso.com" covers "mail.contoso.com", not "contoso.com" nor
    "a.mail.contoso.com". Partial-label wildcards ("mail*.contoso.com") and wildcards over fewer than
    two labels ("*.com") match nothing. Names are compared as the ASCII (A-label) form certificates carry.
    """
    pattern, fqdn = _domain_key(pattern), _domain_key(fqdn)
    if not pattern or not fqdn or "*" in fqdn:
        return False
    if not pattern.startswith("*."):
        return "*" not in pattern and pattern == fqdn
    suffix = pattern[2:]
    if "*" in suffix or "." not in suffix:
        return False
    label, dot, rest = fqdn.partition(".")
    return bool(label and dot) and rest == suffix


def name_matches(fqdn: str, certificate: Certificate) -> bool:
    """Whether the certificate is valid for a host name as a TLS peer (Exchange Online) checks it.

    The DNS subjectAltNames decide; the subject CN is used only when there is no DNS SAN at all
    (RFC 6125 6.4.4). Exchange itself differs: its CertificateDomains list the CN *and* the SANs, and
    transport picks certificates by FQDN among those (exchange_domain_matches()), so it can pick a
    certificate whose only match is the CN, which a peer that follows RFC 6125 then rejects.
    """
    facts = certificate.x509
    if facts is None:
        return False
    identifiers = facts.dns_names or ((facts.subject_cn,) if facts.subject_cn else ())
    return any(dns_name_matches(identifier, fqdn) for identifier in identifiers)


def exchange_domain_matches(fqdn: str, certificate: Certificate) -> bool:
    """Whether Exchange would consider the certificate for a host name: a match among its
    CertificateDomains (CN and SANs), with the same wildcard rule as dns_name_matches()."""
    domains = certificate.certificate_domains
    if not domains and certificate.x509 is not None:
        domains = certificate.x509.dns_names + ((certificate.x509.subject_cn,) if certificate.x509.subject_cn else ())
    return any(dns_name_matches(domain, fqdn) for domain in domains)

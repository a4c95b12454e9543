# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A PFX to import, judged on the controller before anything reaches a server.

Pure Python (cryptography's pkcs12), no Ansible imports. inspect() opens the file with its password and
refuses, with every reason that applies, what Import-ExchangeCertificate or Exchange Online would
refuse later, on a server, after a round trip:
- a file that cannot be opened (wrong password, not PKCS #12), or one without a certificate;
- a file without the private key (transport cannot present a certificate without it, and Exchange
  refuses it for SMTP: PrivateKeyMissing), or whose key belongs to another certificate;
- a certificate outside its validity period (expired, not yet valid);
- one the trust bundle does not vouch for with the intermediates the PFX carries (_trust.evaluate,
  the same judge certificate_info uses: unknown root, self-signed, incomplete chain, weak key or
  signature, no serverAuth);
- one whose names cover none of the hybrid FQDNs it is meant for.
What it found (thumbprint, subject, issuer, names, dates, intermediates) comes back either way, as the
result's `certificate`, so that an admin sees which file was meant.

Neither the password nor the file's bytes are ever part of a message or of the returned facts.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from typing import Sequence

try:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs12
except ImportError:  # pragma: no cover - see _model.CRYPTOGRAPHY_IMPORT_ERROR
    pass

from . import _model, _trust

# Refusal codes (stable, like finding IDs): what the result's pfx_problems list.
UNREADABLE = "unreadable"  # wrong password or not a PKCS #12 file
NO_CERTIFICATE = "no_certificate"
NO_PRIVATE_KEY = "no_private_key"
KEY_MISMATCH = "key_mismatch"
EXPIRED = _trust.EXPIRED
NOT_YET_VALID = _trust.NOT_YET_VALID
UNTRUSTED = "untrusted"
NAME_MISMATCH = _trust.NAME_MISMATCH

# Trust reasons that the dates and name checks already report under their own codes.
_OWN_CODES = {_trust.EXPIRED: EXPIRED, _trust.NOT_YET_VALID: NOT_YET_VALID, _trust.NAME_MISMATCH: NAME_MISMATCH}


class PfxError(ValueError):
    """A PFX that must not be imported. problems: [(code, text)], every one that applies; facts: what
    the file holds (empty when it could not be opened)."""

    def __init__(self, problems: Sequence[tuple[str, str]], facts: dict | None = None):
        super().__init__("; ".join(text for _code, text in problems))
        self.problems = tuple(problems)
        self.facts = facts or {}

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(code for code, _text in self.problems)


@dataclass(frozen=True)
class Pfx:
    """A PFX that passed inspect(): its certificate as certificate_info models one, and its CA certificates."""

    certificate: _model.Certificate
    intermediates: tuple[x509.Certificate, ...]
    verdict: _trust.Verdict

    @property
    def thumbprint(self) -> str:
        return self.certificate.thumbprint

    @property
    def tls_certificate_name(self) -> str:
        return _model.tls_certificate_name_of(self.certificate)

    @property
    def subject(self) -> str:
        return self.certificate.x509.subject_windows

    @property
    def issuer(self) -> str:
        return self.certificate.x509.issuer_windows

    def facts(self) -> dict:
        return certificate_facts(self.certificate, self.intermediates)


def certificate_facts(certificate: _model.Certificate, intermediates: Sequence) -> dict:
    facts = certificate.x509
    return {
        "thumbprint": certificate.thumbprint,
        "subject": facts.subject_windows,
        "issuer": facts.issuer_windows,
        "names": list(facts.dns_names or ((facts.subject_cn,) if facts.subject_cn else ())),
        "not_before": _model.iso_utc(facts.not_before),
        "not_after": _model.iso_utc(facts.not_after),
        "tls_certificate_name": _model.tls_certificate_name_of(certificate),
        "key": "%s %s" % (facts.key_type, facts.key_bits) if facts.key_bits else facts.key_type,
        "intermediates": [{"subject": _model.windows_name(ca.subject), "thumbprint": _model.sha1_thumbprint(ca)}
                          for ca in intermediates],
    }


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _public_der(key_or_cert) -> bytes:
    key = key_or_cert.public_key() if hasattr(key_or_cert, "public_key") else key_or_cert
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def open_pfx(data: bytes, password: str | None):
    """(leaf certificate, private key or None, CA certificates). Raises PfxError (unreadable, no_certificate)."""
    try:
        loaded = pkcs12.load_pkcs12(data, password.encode("utf-8") if password else None)
    except (ValueError, TypeError):
        raise PfxError([(UNREADABLE, "the PFX cannot be opened: wrong pfx_password, or not a PKCS #12 (PFX) file")]) from None
    others = [item.certificate for item in loaded.additional_certs]
    if loaded.cert is not None:
        leaf = loaded.cert.certificate
    else:
        # Without a key bag nothing marks the end-entity certificate: it is the one that is not a CA.
        leaf = next((cert for cert in others if not _is_ca(cert)), None)
        others = [cert for cert in others if cert is not leaf]
    if leaf is None:
        raise PfxError([(NO_CERTIFICATE, "the PFX holds no end-entity certificate")])
    return leaf, loaded.key, tuple(others)


def decode_content(content: str) -> bytes:
    """pfx_content (base64, whitespace allowed) -> bytes. Raises PfxError."""
    try:
        return base64.b64decode("".join(content.split()), validate=True)
    except (ValueError, TypeError):
        raise PfxError([(UNREADABLE, "pfx_content is not base64")]) from None


def inspect(data: bytes, password: str | None, *, store: _trust.TrustStore, names: Sequence[str] | None,
            now: datetime.datetime, min_key_bits: int = 2048) -> Pfx:
    """The PFX if it may be imported for names (the hybrid FQDNs it is meant for); else PfxError with
    every problem and, when the file could be opened, its facts. names None: judged for its own names
    (the caller checks them against the server's names after the audit)."""
    leaf, key, cas = open_pfx(data, password)
    der = leaf.public_bytes(Encoding.DER)
    certificate = _model.Certificate.from_object({
        "Thumbprint": _model.sha1_thumbprint(leaf),
        "RawData": base64.b64encode(der).decode("ascii"),
        "HasPrivateKey": key is not None,
        "Services": "None",
    })
    if certificate.x509 is None:
        raise PfxError([(NO_CERTIFICATE, "the PFX's certificate cannot be read: %s" % certificate.parse_error)])
    facts = certificate_facts(certificate, cas)
    problems = []
    if key is None:
        problems.append((NO_PRIVATE_KEY, "the PFX has no private key: transport cannot present the certificate "
                                         "(export it again with its private key)"))
    elif _public_der(key) != _public_der(leaf):
        problems.append((KEY_MISMATCH, "the PFX's private key does not belong to its certificate"))
    if names is None:
        names = facts["names"] or ["localhost"]
    names = [name for name in names if name]
    if not names:
        raise ValueError("names must hold at least one hybrid FQDN")
    verdict = _trust.evaluate(certificate, intermediates=[leaf, *cas], store=store, names=names, now=now,
                              min_key_bits=min_key_bits)
    trust_reasons = []
    for reason in verdict.reasons:
        if reason.code == _trust.NO_PRIVATE_KEY:
            continue  # reported above
        if reason.code in _OWN_CODES:
            problems.append((_OWN_CODES[reason.code], reason.text))
        else:
            trust_reasons.append(reason)
    if trust_reasons:
        problems.append((UNTRUSTED, "not trusted by the trust bundle %s with the intermediates in the PFX: %s"
                         % (store.source, "; ".join("%s (%s)" % (r.code, r.text) for r in trust_reasons))))
    if problems:
        order = (UNREADABLE, NO_CERTIFICATE, NO_PRIVATE_KEY, KEY_MISMATCH, EXPIRED, NOT_YET_VALID, UNTRUSTED, NAME_MISMATCH)
        raise PfxError(sorted(problems, key=lambda problem: order.index(problem[0])), facts)
    return Pfx(certificate, cas, verdict)


def describe(facts: dict) -> str:
    """One line naming a PFX's certificate, for messages."""
    if not facts:
        return "the PFX"
    return "%s (%s, issued by %s, valid %s to %s, names %s)" % (
        facts["thumbprint"], facts["subject"], facts["issuer"], facts["not_before"], facts["not_after"],
        ", ".join(facts["names"]) or "none")

"""Shared helpers of the model and trust tests.

der: certificates that cryptography's builder refuses to make. cryptography signs nothing with MD5,
accepts no date before 1950 and writes no malformed certificate, but Exchange servers can hold such
certificates, so the tests edit and re-sign a built certificate's TBSCertificate by hand.

exchange_certificate: a _model.Certificate from a Get-ExchangeCertificate object as the runner sends it.

lab_store: the trust store of the lab's Exchange Online (the roots and intermediates of its fleets).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import types

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _model, _trust
from tests.lab import pki
from tests.lab.exchange.fleet import Fleet

# DER of AlgorithmIdentifier {<alg>WithRSAEncryption, NULL}.
_RSA_SIGNATURE_ALGORITHMS = {
    "md5": (bytes.fromhex("300d06092a864886f70d0101040500"), hashes.MD5),
    "sha1": (bytes.fromhex("300d06092a864886f70d0101050500"), hashes.SHA1),
    "sha256": (bytes.fromhex("300d06092a864886f70d01010b0500"), hashes.SHA256),
}
# TBSCertificate children, with the [0] version present.
VERSION, SIGNATURE, VALIDITY, EXTENSIONS = 0, 2, 4, 7


def _length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def content(element: bytes) -> bytes:
    header = 2 + (element[1] & 0x7F if element[1] & 0x80 else 0)
    return element[header:]


def children(constructed: bytes) -> list[bytes]:
    """The elements inside a constructed DER element."""
    inner, elements, index = content(constructed), [], 0
    while index < len(inner):
        length, header = inner[index + 1], 2
        if length & 0x80:
            count = length & 0x7F
            length, header = int.from_bytes(inner[index + 2 : index + 2 + count], "big"), 2 + count
        elements.append(inner[index : index + header + length])
        index += header + length
    return elements


def time(moment: datetime.datetime) -> bytes:
    """RFC 5280 4.1.2.5: UTCTime for 1950-2049, GeneralizedTime otherwise."""
    moment = moment.astimezone(datetime.timezone.utc)
    if 1950 <= moment.year < 2050:
        return tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode("ascii"))


def reissue(cert: x509.Certificate, signer: rsa.RSAPrivateKey, *, signature_hash: str = "sha256", edit=None) -> bytes:
    """cert's DER re-signed by signer (an RSA key) with signature_hash, after edit(tbs_children) if given."""
    algorithm, hash_type = _RSA_SIGNATURE_ALGORITHMS[signature_hash]
    tbs_children = children(cert.tbs_certificate_bytes)
    tbs_children[SIGNATURE] = algorithm
    if edit is not None:
        edit(tbs_children)
    tbs = tlv(0x30, b"".join(tbs_children))
    signature = signer.sign(tbs, padding.PKCS1v15(), hash_type())
    return tlv(0x30, tbs + algorithm + tlv(0x03, b"\x00" + signature))


@pytest.fixture(scope="session")
def der():
    """Hand-made DER: reissue() and the pieces an edit needs."""
    return types.SimpleNamespace(
        reissue=reissue, tlv=tlv, content=content, children=children, time=time, VERSION=VERSION, VALIDITY=VALIDITY, EXTENSIONS=EXTENSIONS
    )


def certificate_object(der: bytes, **overrides) -> dict:
    """Get-ExchangeCertificate's converted object for a DER certificate bound to SMTP with its key."""
    cert = x509.load_der_x509_certificate(der)
    obj = {
        "Thumbprint": hashlib.sha1(der).hexdigest().upper(),
        "Subject": pki.format_name(cert.subject),
        "Issuer": pki.format_name(cert.issuer),
        "FriendlyName": "Hybrid",
        "Services": "IIS, SMTP",
        "Status": "Valid",
        "RootCAType": "ThirdParty",
        "IsSelfSigned": cert.subject == cert.issuer,
        "HasPrivateKey": True,
        "CertificateDomains": [],
        "NotBefore": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "NotAfter": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "RawData": base64.b64encode(der).decode("ascii"),
    }
    obj.update(overrides)
    return obj


def exchange_certificate(issued_or_der, **overrides) -> _model.Certificate:
    der = issued_or_der if isinstance(issued_or_der, bytes) else issued_or_der.der
    return _model.Certificate.from_object(certificate_object(der, **overrides))


@pytest.fixture(scope="session", name="exchange_certificate")
def exchange_certificate_fixture():
    return exchange_certificate


@pytest.fixture(scope="module")
def lab_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "bundle.pem"
    healthy = os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab", "fleets", "healthy.yml")
    path.write_bytes(Fleet.load(healthy).trust_bundle_pem())
    return _trust.load_trust_bundle(str(path))

"""The lab's own HTTPS certificate authority: one CA and one server certificate for 127.0.0.1.

This is the WinRM listener certificate of the simulated servers, not part of the Exchange scenario:
the Exchange certificates (the subject under test) come from tests/lab/pki.py and the fleet files.
Every simulated server listens on 127.0.0.1, so one server certificate serves all of them.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any lab run, short enough that nobody mistakes it for a real certificate.
_VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class ListenerCertificates:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    cert_der: bytes

    def channel_binding_hash(self) -> bytes:
        """The RFC 5929 tls-server-end-point hash of the server certificate (NTLM channel binding)."""
        return hashlib.sha256(self.cert_der).digest()

    def write(self, directory: str) -> dict[str, str]:
        """Write the PEM files; returns their paths (the CA path goes into the inventory)."""
        paths = {
            "ca": os.path.join(directory, "winrm-ca.pem"),
            "cert": os.path.join(directory, "winrm-listener.pem"),
            "key": os.path.join(directory, "winrm-listener.key"),
        }
        for name, data in (("ca", self.ca_pem), ("cert", self.cert_pem), ("key", self.key_pem)):
            with open(paths[name], "wb") as handle:
                handle.write(data)
        os.chmod(paths["key"], 0o600)
        return paths

    def server_context(self, directory: str) -> ssl.SSLContext:
        """A server-side TLS context for the listener (the ssl module only loads keys from files)."""
        paths = self.write(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(paths["cert"], paths["key"])
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hybridmail lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def create_listener_certificates(hostnames: tuple[str, ...] = ("localhost",)) -> ListenerCertificates:
    """A fresh CA and a server certificate valid for 127.0.0.1, ::1 and the given DNS names."""
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = now - datetime.timedelta(minutes=5)  # tolerate small clock differences

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("hybridmail lab WinRM CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    alt_names = [x509.DNSName(name) for name in hostnames]
    alt_names += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostnames[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    return ListenerCertificates(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        cert_der=cert.public_bytes(serialization.Encoding.DER),
    )

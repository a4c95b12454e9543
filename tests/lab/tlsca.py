"""The lab's own HTTPS certificate authority: one CA and one server certificate for 127.0.0.1.

This is the WinRM listener certificate of the simulated servers, not part of the Exchange scenario:
the Exchange certificates (the subject under test) come from tests/lab/pki.py and the fleet files.
Every simulated server listens on 127.0.0.1, so one server certificate serves all of them.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.lab import pki

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


def create_listener_certificates(hostnames: tuple[str, ...] = ("localhost",)) -> ListenerCertificates:
    """A fresh CA and a server certificate valid for 127.0.0.1, ::1 and the given DNS names."""
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before = now - datetime.timedelta(minutes=5)  # tolerate small clock differences
    # Fresh keys, not the lab's pooled ones: the listener's private key is written to disk.
    ca = pki.make_ca("CN=hybridmail lab WinRM CA, O=hybridmail lab", key=ec.generate_private_key(ec.SECP256R1()),
                     not_before=not_before, not_after=now + _VALIDITY, now=now, path_length=0)
    server = pki.make_leaf("CN=%s, O=hybridmail lab" % hostnames[0], ca, sans=list(hostnames) + ["127.0.0.1", "::1"],
                           key=ec.generate_private_key(ec.SECP256R1()), not_before=not_before, not_after=now + _VALIDITY,
                           now=now, eku=("serverAuth",))
    return ListenerCertificates(
        ca_pem=ca.pem,
        cert_pem=server.pem,
        key_pem=server.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        cert_der=server.der,
    )

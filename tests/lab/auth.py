"""HTTP authentication of the lab's WinRM listener: Basic and NTLM, plus NTLM message encryption.

Windows authenticates NTLM per TCP connection (after the handshake, later requests on the same
connection carry no Authorization header) and, over HTTP, wraps every message in a
`multipart/encrypted` body sealed with the NTLM session keys ([MS-WSMV] 2.2.9.1). Basic is checked
on every request. pyspnego is the NTLM acceptor; its only user store is the file named by the
NTLM_USER_FILE environment variable, so the authenticator writes that file and sets the variable.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
from dataclasses import dataclass, field

import spnego
import spnego.channel_bindings
import spnego.exceptions

BASIC_CHALLENGE = 'Basic realm="WSMAN"'
NEGOTIATE_CHALLENGE = "Negotiate"

ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
ENCRYPTED_CONTENT_TYPE = 'multipart/encrypted;protocol="%s";boundary="Encrypted Boundary"' % ENCRYPTED_PROTOCOL
_BOUNDARY = b"--Encrypted Boundary"
_LENGTH_RE = re.compile(rb"Length=(\d+)")
_OCTET_STREAM = b"\tContent-Type: application/octet-stream\r\n"
_NTLM_SIGNATURE_LENGTH = 16


class EncryptionError(Exception):
    """An encrypted body that cannot be decrypted (wrong session, tampered or malformed)."""


@dataclass
class AuthDecision:
    accepted: bool
    # WWW-Authenticate values of a 401 response (a challenge token while NTLM is mid-handshake).
    challenges: list[str] = field(default_factory=list)
    # Credentials were presented and are wrong (not merely absent or mid-handshake).
    failed: bool = False


class Authenticator:
    """The lab's single local account, accepted through Basic and NTLM on every listener."""

    def __init__(self, username: str, password: str, state_dir: str, channel_binding_hash: bytes | None = None):
        if any(char in username + password for char in ":\r\n"):
            raise ValueError("lab credentials must not contain ':' or line breaks (NTLM user file format)")
        self.username = username
        self.password = password
        # Over HTTPS, requests_ntlm binds the NTLM exchange to the listener certificate (CBT).
        self._channel_binding_hash = channel_binding_hash
        domain, _separator, user = username.rpartition("\\")
        user_file = os.path.join(state_dir, "ntlm-users")
        with open(user_file, "w", encoding="utf-8") as handle:
            handle.write("%s:%s:%s\n" % (domain, user, password))
        os.chmod(user_file, 0o600)
        os.environ["NTLM_USER_FILE"] = user_file

    def challenges(self) -> list[str]:
        return [NEGOTIATE_CHALLENGE, BASIC_CHALLENGE]

    def check_basic(self, token: str) -> bool:
        try:
            user, _separator, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user.lower() == self.username.lower() and password == self.password

    def new_ntlm_context(self):
        bindings = None
        if self._channel_binding_hash is not None:
            bindings = spnego.channel_bindings.GssChannelBindings(
                application_data=b"tls-server-end-point:" + self._channel_binding_hash
            )
        return spnego.server(
            protocol="ntlm", channel_bindings=bindings, options=spnego.NegotiateOptions.use_ntlm
        )

    def connection(self) -> "ConnectionAuth":
        return ConnectionAuth(self)


class ConnectionAuth:
    """Authentication state of one TCP connection (used by that connection's thread only)."""

    def __init__(self, authenticator: Authenticator):
        self._authenticator = authenticator
        self._ntlm = None
        self.ntlm_established = False

    def check(self, authorization: str | None) -> AuthDecision:
        if not authorization:
            if self.ntlm_established:
                return AuthDecision(True)
            return AuthDecision(False, self._authenticator.challenges())
        scheme, _separator, token = authorization.strip().partition(" ")
        if scheme.lower() == "basic":
            if self._authenticator.check_basic(token.strip()):
                return AuthDecision(True)
            return AuthDecision(False, self._authenticator.challenges(), failed=True)
        if scheme.lower() in ("negotiate", "ntlm"):
            return self._ntlm_step(scheme, token.strip())
        return AuthDecision(False, self._authenticator.challenges(), failed=True)

    def _ntlm_step(self, scheme: str, token: str) -> AuthDecision:
        try:
            in_token = base64.b64decode(token, validate=True)
            # A NEGOTIATE_MESSAGE (type 1) starts a new handshake, also on an authenticated connection.
            if self._ntlm is None or in_token[8:12] == struct.pack("<I", 1):
                self._ntlm = self._authenticator.new_ntlm_context()
                self.ntlm_established = False
            out_token = self._ntlm.step(in_token)
        except (binascii.Error, spnego.exceptions.SpnegoError):
            self.forget()
            # Windows answers a failed handshake with a bare challenge, which requests_ntlm reports
            # as rejected credentials instead of retrying.
            return AuthDecision(False, [scheme], failed=True)
        if not self._ntlm.complete:
            return AuthDecision(False, ["%s %s" % (scheme, base64.b64encode(out_token or b"").decode("ascii"))])
        self.ntlm_established = True
        return AuthDecision(True)

    def forget(self) -> None:
        self._ntlm = None
        self.ntlm_established = False

    def decrypt(self, body: bytes) -> bytes:
        """The SOAP text of a multipart/encrypted body sealed with this connection's NTLM keys."""
        if not self.ntlm_established:
            raise EncryptionError("encrypted message on a connection without an NTLM session")
        try:
            header, sealed_part = body.split(_BOUNDARY + b"\r\n")[1:3]
            expected_length = int(_LENGTH_RE.search(header).group(1))
            if not sealed_part.startswith(_OCTET_STREAM):
                raise EncryptionError("missing application/octet-stream part")
            payload = sealed_part[len(_OCTET_STREAM):]
            signature_length = struct.unpack("<i", payload[:4])[0]
            # The sealed message has the plain text's length (RC4); the closing boundary follows it.
            sealed = payload[4 : 4 + signature_length + expected_length]
            plain = self._ntlm.unwrap(sealed).data
        except EncryptionError:
            raise
        except (ValueError, AttributeError, struct.error, spnego.exceptions.SpnegoError) as exc:
            raise EncryptionError("cannot decrypt the message: %s" % exc) from None
        if len(plain) != expected_length:
            raise EncryptionError("decrypted length does not match OriginalContent")
        return plain

    def encrypt(self, message: bytes) -> bytes:
        """A multipart/encrypted body carrying message, as Windows sends it back."""
        wrapped = self._ntlm.wrap(message, encrypt=True).data
        return (
            _BOUNDARY + b"\r\n"
            b"\tContent-Type: " + ENCRYPTED_PROTOCOL.encode("ascii") + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(message)).encode("ascii") + b"\r\n"
            + _BOUNDARY + b"\r\n" + _OCTET_STREAM
            + struct.pack("<i", _NTLM_SIGNATURE_LENGTH) + wrapped
            + _BOUNDARY + b"--\r\n"
        )

"""Real X.509 material for the lab and for unit tests, built with `cryptography`.

Everything here is deterministic where that is practical: keys come from a pool seeded by their
label (pure-Python prime search, once per process), serial numbers are derived from the certificate
contents and ECDSA signatures are RFC 6979 deterministic. The same inputs therefore give the same
DER and the same thumbprint in every process, which keeps fleet files reproducible within a day
(fleet dates are relative to the current UTC day).

Names are written and read the way .NET shows them (`X509Certificate2.Subject`): most specific
first, `", "` between RDNs, values quoted with `"` when they contain special characters, e.g.
`CN=mail.contoso.com, O="Contoso, Ltd", C=US`. That is the form Exchange puts into Subject,
Issuer and TlsCertificateName, so the lab can compare with what the collection reads.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
import re
import threading
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]
UTC = datetime.timezone.utc

# --------------------------------------------------------------------------------------------
# Keys: a deterministic pool
# --------------------------------------------------------------------------------------------

DEFAULT_SIZES = {"rsa": 2048, "ec": 256}
_CURVES = {256: ec.SECP256R1, 384: ec.SECP384R1, 521: ec.SECP521R1}
_RSA_EXPONENT = 65537
_SMALL_PRIMES = None  # filled lazily: odd primes below 2**13 for sieving
_KEY_LOCK = threading.Lock()


class _ByteStream:
    """SHA-512 in counter mode: an endless, portable stream of bytes derived from a seed."""

    def __init__(self, seed: bytes):
        self._seed = seed
        self._counter = 0

    def bits(self, count: int) -> int:
        needed = (count + 7) // 8
        chunks = []
        while sum(len(chunk) for chunk in chunks) < needed:
            chunks.append(hashlib.sha512(self._seed + self._counter.to_bytes(8, "big")).digest())
            self._counter += 1
        value = int.from_bytes(b"".join(chunks)[:needed], "big")
        return value >> (needed * 8 - count)


def _small_primes() -> list:
    global _SMALL_PRIMES
    if _SMALL_PRIMES is None:
        limit = 1 << 13
        sieve = bytearray([1]) * limit
        sieve[0:2] = b"\x00\x00"
        for number in range(2, int(limit**0.5) + 1):
            if sieve[number]:
                sieve[number * number :: number] = bytes(len(range(number * number, limit, number)))
        _SMALL_PRIMES = [number for number in range(3, limit) if sieve[number]]
    return _SMALL_PRIMES


def _miller_rabin(candidate: int, bases: Iterable[int]) -> bool:
    d, s = candidate - 1, 0
    while not d & 1:
        d >>= 1
        s += 1
    for base in bases:
        x = pow(base, d, candidate)
        if x in (1, candidate - 1):
            continue
        for _square in range(s - 1):
            x = pow(x, 2, candidate)
            if x == candidate - 1:
                break
        else:
            return False
    return True


# After base 2, a few more rounds: ample for random (not adversarial) candidates.
_MR_BASES = (3, 5, 7, 11, 13)


def _find_prime(bits: int, stream: _ByteStream) -> int:
    """A prime of exactly `bits` bits with the top two bits set (so p*q has full length)."""
    window = 4096  # odd candidates start + 2*i for i < window
    while True:
        start = stream.bits(bits) | (3 << (bits - 2)) | 1
        alive = bytearray([1]) * window
        for prime in _small_primes():
            # first i with start + 2*i == 0 (mod prime)
            first = (-start * pow(2, -1, prime)) % prime
            alive[first::prime] = bytes(len(range(first, window, prime)))
        for index in range(window):
            if not alive[index]:
                continue
            candidate = start + 2 * index
            if candidate.bit_length() != bits:
                break
            if (candidate - 1) % _RSA_EXPONENT == 0:
                continue  # e must be invertible mod p-1
            if _miller_rabin(candidate, (2,)) and _miller_rabin(candidate, _MR_BASES):
                return candidate


@functools.lru_cache(maxsize=None)
def _pooled_prime(bits: int, index: int) -> int:
    return _find_prime(bits, _ByteStream(("hybridmail-lab/prime/%d/%d" % (bits, index)).encode("ascii")))


def _prime_pair(slot: int) -> tuple:
    """Slot -> (i, j), i < j, enumerating pairs so that n primes give n*(n-1)/2 keys."""
    j = 1
    while slot >= j:
        slot -= j
        j += 1
    return slot, j


def _rsa_for_slot(size: int, slot: int) -> rsa.RSAPrivateKey:
    # A prime search in pure Python costs ~0.1-0.2 s per 1024-bit prime, so keys are built from
    # pairs of pooled primes: five primes give ten distinct 2048-bit keys. Sharing primes between
    # moduli would be fatal for real keys (batch GCD); for lab keys it only buys speed.
    first, second = _prime_pair(slot)
    p = _pooled_prime(size - size // 2, first)
    q = _pooled_prime(size // 2, second)
    d = pow(_RSA_EXPONENT, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(_RSA_EXPONENT, p * q),
    )
    return numbers.private_key()


def _ec_from_seed(size: int, seed: bytes) -> ec.EllipticCurvePrivateKey:
    if size not in _CURVES:
        raise ValueError("unsupported EC key size %r (use 256, 384 or 521)" % size)
    # One bit less than the curve order: always a valid scalar, never zero after +1.
    secret = _ByteStream(seed).bits(size - 1) + 1
    return ec.derive_private_key(secret, _CURVES[size]())


@functools.lru_cache(maxsize=None)
def _pooled_key(kind: str, size: int, slot: int) -> PrivateKey:
    if kind == "rsa":
        return _rsa_for_slot(size, slot)
    return _ec_from_seed(size, ("hybridmail-lab/ec/%d/%d" % (size, slot)).encode("ascii"))


def make_key(kind: str = "rsa", size: int | None = None, slot: int = 0) -> PrivateKey:
    """A private key from the process-wide pool: the same (kind, size, slot) always gives the same key.

    RSA keys are expensive to make in pure Python (see _rsa_for_slot; 4096-bit keys take seconds),
    so the lab uses a handful of slots and shares them between certificates; EC keys are cheap.
    A pooled key must not be mutated or exported as a secret: it is lab material.
    """
    kind = kind.lower()
    if kind not in DEFAULT_SIZES:
        raise ValueError("unknown key kind %r (use 'rsa' or 'ec')" % kind)
    size = int(size or DEFAULT_SIZES[kind])
    if kind == "rsa" and size < 512:
        raise ValueError("RSA key size %d is too small" % size)
    with _KEY_LOCK:  # generation is deterministic, the lock only avoids doing it twice
        return _pooled_key(kind, size, int(slot))


def parse_key_spec(spec: str) -> tuple:
    """'rsa2048' / 'rsa-4096' / 'ec256' / 'ecdsa384' / 'rsa' -> (kind, size)."""
    match = re.fullmatch(r"\s*(rsa|ec|ecdsa)[-_ ]?(\d+)?\s*", str(spec).lower())
    if not match:
        raise ValueError("key %r: expected e.g. rsa2048, rsa4096, ec256, ec384" % spec)
    kind = "ec" if match.group(1).startswith("ec") else "rsa"
    return kind, int(match.group(2) or DEFAULT_SIZES[kind])


# --------------------------------------------------------------------------------------------
# Names, .NET style
# --------------------------------------------------------------------------------------------

# Short names as Windows' CertNameToStr writes them (X500 form), with common aliases accepted on input.
_NAME_OIDS = {
    "CN": NameOID.COMMON_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "L": NameOID.LOCALITY_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
    "E": NameOID.EMAIL_ADDRESS,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "T": NameOID.TITLE,
    "G": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
    "PostalCode": NameOID.POSTAL_CODE,
}
_NAME_ALIASES = {"ST": "S", "EMAIL": "E", "EMAILADDRESS": "E", "GIVENNAME": "G", "SURNAME": "SN"}
_OID_NAMES = {oid: short for short, oid in _NAME_OIDS.items()}
_NEEDS_QUOTES = re.compile(r'[,+=<>#;"\r\n]|^\s|\s$')


def _quote(value: str) -> str:
    if value == "" or _NEEDS_QUOTES.search(value):
        return '"%s"' % value.replace('"', '""')
    return value


def format_name(name: x509.Name) -> str:
    """The .NET `X500DistinguishedName.Name` string: most specific RDN first, ', ' separated."""
    parts = []
    for rdn in reversed(list(name.rdns)):
        attributes = []
        for attribute in rdn:
            short = _OID_NAMES.get(attribute.oid, "OID." + attribute.oid.dotted_string)
            value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
            attributes.append("%s=%s" % (short, _quote(value)))
        parts.append(" + ".join(attributes))
    return ", ".join(parts)


def _split_unquoted(text: str, separators: str) -> list:
    """Split at separator characters outside double quotes and not escaped with a backslash."""
    parts, current, quoted, index = [], [], False, 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        if char in separators and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    if quoted:
        raise ValueError("unbalanced quotes in %r" % text)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('""', '"')
    return re.sub(r"\\(.)", r"\1", value)


def parse_name(text: str) -> x509.Name:
    """A distinguished name written .NET style (most specific first) -> x509.Name.

    Accepts ', ' or ',' (and ';') between RDNs, '+' inside multi-valued RDNs, double-quoted values
    and backslash escapes. Non-ASCII text is kept (UTF8String); C is a PrintableString, DC and E are
    IA5Strings, as certificate authorities encode them.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty distinguished name")
    rdns = []
    for rdn_text in _split_unquoted(text, ",;"):
        attributes = []
        for attribute_text in _split_unquoted(rdn_text, "+"):
            key, separator, value = attribute_text.partition("=")
            key = key.strip()
            if not separator or not key:
                raise ValueError("%r is not a distinguished name (no '=' in %r)" % (text, attribute_text))
            short = _NAME_ALIASES.get(key.upper(), key)
            oid = next((oid for name, oid in _NAME_OIDS.items() if name.upper() == short.upper()), None)
            if oid is None:
                if not re.fullmatch(r"(?i)(OID\.)?\d+(\.\d+)+", short):
                    raise ValueError("unknown attribute %r in %r" % (key, text))
                oid = ObjectIdentifier(re.sub(r"(?i)^OID\.", "", short))
            attributes.append(x509.NameAttribute(oid, _unquote(value)))
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(list(reversed(rdns)))


def normalize_name(text: str) -> str:
    """A DN string in the exact form Exchange shows it (parse, then format)."""
    return format_name(parse_name(text))


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*([+-])\s*(\d+)\s*(s|m|h|d|w|y)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(UTC).replace(microsecond=0)


def parse_when(value, now: datetime.datetime) -> datetime.datetime:
    """'+20d', '-1y', '-90m', '+12h', '+2w', 'now', an ISO date/time, or a datetime -> aware UTC datetime.

    Relative values count from `now`; a year is 365 days.
    """
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value).strip()
    if text.lower() == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        seconds = int(match.group(2)) * _UNITS[match.group(3).lower()]
        delta = datetime.timedelta(seconds=seconds)
        return now + delta if match.group(1) == "+" else now - delta
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("%r is not a date: use +20d, -1y, now or an ISO date" % value) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------

_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
_EKUS = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}
# AlgorithmIdentifier OIDs for signatures cryptography no longer creates (SHA-1).
_SHA1_SIGNATURE_OIDS = {"rsa": "1.2.840.113549.1.1.5", "ec": "1.2.840.10045.4.1"}


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key, in the forms callers need."""

    cert: x509.Certificate
    key: PrivateKey
    der: bytes
    pem: bytes
    thumbprint: str  # SHA-1 of the DER, upper-case hex, as Windows shows it

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, key: PrivateKey) -> "Issued":
        der = cert.public_bytes(serialization.Encoding.DER)
        return cls(
            cert=cert,
            key=key,
            der=der,
            pem=cert.public_bytes(serialization.Encoding.PEM),
            thumbprint=hashlib.sha1(der).hexdigest().upper(),
        )

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def subject(self) -> str:
        return format_name(self.cert.subject)

    @property
    def issuer(self) -> str:
        return format_name(self.cert.issuer)

    @property
    def not_before(self) -> datetime.datetime:
        return self.cert.not_valid_before_utc

    @property
    def not_after(self) -> datetime.datetime:
        return self.cert.not_valid_after_utc

    @property
    def is_self_signed(self) -> bool:
        return self.cert.subject == self.cert.issuer

    @property
    def dns_names(self) -> list:
        try:
            san = self.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return []
        return san.get_values_for_type(x509.DNSName)


def _hash(name: str):
    try:
        return _HASHES[name.lower().replace("-", "")]()
    except KeyError:
        raise ValueError("unknown signature hash %r (use sha1, sha256, sha384, sha512)" % name) from None


def _key_kind(key) -> str:
    return "ec" if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) else "rsa"


def _derive_serial(*parts) -> int:
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).digest()
    return (int.from_bytes(digest[:16], "big") >> 1) | 1  # positive, non-zero, at most 127 bits


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded


def _der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_children(data: bytes) -> list:
    """The TLV elements inside one DER constructed value's content."""
    children, index = [], 0
    while index < len(data):
        start = index
        index += 1
        length = data[index]
        index += 1
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(data[index : index + count], "big")
            index += count
        index += length
        children.append(data[start:index])
    return children


def _der_content(tlv: bytes) -> bytes:
    length = tlv[1]
    header = 2 + (length & 0x7F if length & 0x80 else 0)
    return tlv[header:]


def _der_oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.insert(0, 0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(chunk)
    return _der_tlv(0x06, bytes(body))


def _resign_sha1(cert: x509.Certificate, key: PrivateKey) -> x509.Certificate:
    """Re-sign a certificate with SHA-1, which cryptography refuses to create.

    Legacy servers still hold SHA-1 certificates (HealthChecker flags them), so the lab needs them.
    The TBSCertificate is rebuilt with the SHA-1 AlgorithmIdentifier and signed directly.
    """
    kind = _key_kind(key)
    oid = _der_oid(_SHA1_SIGNATURE_OIDS[kind])
    algorithm = _der_tlv(0x30, oid + (b"\x05\x00" if kind == "rsa" else b""))
    tbs_children = _der_children(_der_content(cert.tbs_certificate_bytes))
    signature_index = 2 if tbs_children[0][0] == 0xA0 else 1  # after [0] version and serial
    tbs_children[signature_index] = algorithm
    tbs = _der_tlv(0x30, b"".join(tbs_children))
    if kind == "rsa":
        signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    else:
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA1(), deterministic_signing=True))
    der = _der_tlv(0x30, tbs + algorithm + _der_tlv(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def _sign(builder: x509.CertificateBuilder, key: PrivateKey, hash_name: str) -> x509.Certificate:
    if hash_name.lower() == "sha1":
        return _resign_sha1(builder.sign(key, hashes.SHA256(), **_sign_options(key)), key)
    return builder.sign(key, _hash(hash_name), **_sign_options(key))


def _sign_options(key) -> dict:
    return {"ecdsa_deterministic": True} if _key_kind(key) == "ec" else {}


def _as_name(value) -> x509.Name:
    return value if isinstance(value, x509.Name) else parse_name(value)


def _general_name(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        pass
    if value.lower().startswith("email:"):
        return x509.RFC822Name(value[6:])
    return x509.DNSName(value)


def _key_for(key, key_kind, key_size, key_slot) -> PrivateKey:
    if key is not None:
        return key
    return make_key(key_kind, key_size, key_slot)


def _validity(not_before, not_after, now, default_days) -> tuple:
    now = now or utcnow()
    start = parse_when(not_before, now) if not_before is not None else now - datetime.timedelta(days=1)
    end = parse_when(not_after, now) if not_after is not None else start + datetime.timedelta(days=default_days)
    return start.replace(microsecond=0), end.replace(microsecond=0)


def make_ca(
    subject,
    issuer: Issued | None = None,
    *,
    key: PrivateKey | None = None,
    key_kind: str = "rsa",
    key_size: int | None = None,
    key_slot: int = 0,
    not_before=None,
    not_after=None,
    now: datetime.datetime | None = None,
    hash: str = "sha256",
    path_length: int | None = None,
    serial: int | None = None,
) -> Issued:
    """A CA certificate: a self-signed root when issuer is None, else an intermediate signed by issuer."""
    key = _key_for(key, key_kind, key_size, key_slot)
    subject_name = _as_name(subject)
    start, end = _validity(not_before, not_after, now, 3650)
    signer_key = issuer.key if issuer else key
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_name)
        .issuer_name(issuer.cert.subject if issuer else subject_name)
        .public_key(key.public_key())
        .serial_number(serial or _derive_serial("ca", format_name(subject_name), start, end, ski.digest.hex()))
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(ski, critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    return Issued.from_certificate(_sign(builder, signer_key, hash), key)


def make_leaf(
    subject,
    issuer: Issued | None = None,
    *,
    sans: Sequence[str] | None = None,
    not_before=None,
    not_after=None,
    now: datetime.datetime | None = None,
    key: PrivateKey | None = None,
    key_kind: str = "rsa",
    key_size: int | None = None,
    key_slot: int = 0,
    hash: str = "sha256",
    eku: Sequence[str] | None = ("serverAuth",),
    serial: int | None = None,
    basic_constraints: bool = True,
) -> Issued:
    """An end-entity certificate; self-signed when issuer is None.

    `sans` are DNS names (IP addresses and 'email:' entries are recognised); `eku` names come from
    serverAuth, clientAuth, ... or dotted OIDs, None for no EKU extension. Dates accept what
    parse_when accepts; the defaults are yesterday and one year later.
    """
    key = _key_for(key, key_kind, key_size, key_slot)
    subject_name = _as_name(subject)
    start, end = _validity(not_before, not_after, now, 365)
    signer_key = issuer.key if issuer else key
    kind = _key_kind(key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_name)
        .issuer_name(issuer.cert.subject if issuer else subject_name)
        .public_key(key.public_key())
        .serial_number(
            serial
            or _derive_serial(
                "leaf",
                format_name(subject_name),
                issuer.thumbprint if issuer else "self",
                start,
                end,
                ",".join(sans or ()),
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest.hex(),
            )
        )
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=kind == "rsa",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if eku:
        usages = [_EKUS.get(name) or ObjectIdentifier(name) for name in eku]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(name) for name in sans]), critical=False
        )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    return Issued.from_certificate(_sign(builder, signer_key, hash), key)


# --------------------------------------------------------------------------------------------
# Exchange's own certificates
# --------------------------------------------------------------------------------------------

EXCHANGE_SELF_SIGNED_FRIENDLY_NAME = "Microsoft Exchange"
AUTH_CERTIFICATE_SUBJECT = "CN=Microsoft Exchange Server Auth Certificate"
AUTH_CERTIFICATE_FRIENDLY_NAME = "Microsoft Exchange Server Auth Certificate"
_FIVE_YEARS = datetime.timedelta(days=5 * 365 + 1)


def make_exchange_self_signed(
    server: str,
    fqdn: str,
    *,
    not_before=None,
    now: datetime.datetime | None = None,
    key: PrivateKey | None = None,
    key_slot: int = 0,
    hash: str = "sha256",
) -> Issued:
    """The certificate Exchange setup creates: CN=<server>, SANs server name and FQDN, five years.

    Exchange makes it the internal transport certificate and enables IMAP, POP, IIS and SMTP on it.
    """
    now = now or utcnow()
    start = parse_when(not_before, now) if not_before is not None else now - datetime.timedelta(days=400)
    return make_leaf(
        "CN=%s" % server,
        None,
        sans=[server, fqdn],
        not_before=start,
        not_after=start + _FIVE_YEARS,
        now=now,
        key=key,
        key_slot=key_slot,
        hash=hash,
        basic_constraints=False,
    )


def make_exchange_auth_certificate(
    *, not_before=None, now: datetime.datetime | None = None, key: PrivateKey | None = None, key_slot: int = 0
) -> Issued:
    """The organisation's OAuth certificate: self-signed, no SAN, five years (never to be touched)."""
    now = now or utcnow()
    start = parse_when(not_before, now) if not_before is not None else now - datetime.timedelta(days=400)
    return make_leaf(
        AUTH_CERTIFICATE_SUBJECT,
        None,
        sans=None,
        not_before=start,
        not_after=start + _FIVE_YEARS,
        now=now,
        key=key,
        key_slot=key_slot,
        eku=None,
        basic_constraints=False,
    )


def pem_bundle(certificates: Iterable[Issued]) -> bytes:
    return b"".join(item.pem for item in certificates)


def make_pfx(issued: Issued, chain: Iterable[Issued] = (), *, password: str | None, include_key: bool = True,
             friendly_name: str | None = None) -> bytes:
    """A PKCS #12 (PFX) file of issued with the CA certificates in chain, as Export-PfxCertificate or a
    CA's download writes it: the key and certificates encrypted with password (None: not encrypted).
    include_key=False leaves the private key out (what exporting a certificate without its key gives)."""
    encryption = (serialization.BestAvailableEncryption(password.encode("utf-8")) if password
                  else serialization.NoEncryption())
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode("utf-8") if friendly_name else None,
        issued.key if include_key else None,
        issued.cert,
        [item.cert for item in chain] or None,
        encryption,
    )

# Copyright: (c) 2026, hybridmail.exchange contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Would Exchange Online accept this certificate? RFC 5280 path validation plus every independent reason
why not.

Exchange Online accepts a hybrid certificate only when it chains to a root of the Microsoft Trusted Root
Program with the intermediates the *server* sends (it does not fetch missing ones), is in its validity
period, covers the name, and so on (docs: exchange-facts.md). evaluate() answers that and lists *all*
the reasons a certificate fails, not only the first one, so one report tells an admin everything to fix.

How the reasons are computed:
- Proof of trust is cryptography's serverAuth verifier (PolicyBuilder ... build_server_verifier(DNSName)
  .verify(leaf, intermediates)) with the trust bundle as store and only the intermediates the server
  holds. `trusted` is True only when that succeeds and no other reason applies.
- The verifier stops at its first objection, and refuses some things outright (SHA-1/MD5 signatures,
  expired certificates, missing SAN ...). So validity dates, key size, signature hash, EKU, private key,
  self-signature and name coverage are checked directly on the parsed facts, each on its own.
- Reachability of the bundle is decided by a small path search of our own (issuer name + signature,
  see _search_path), because the verifier's refusals would hide it: an expired, SHA-1-signed certificate
  from a trusted CA must read "expired, weak_signature", not "unknown_root". The search runs first with
  the intermediates the server holds, then, if that fails, also with `known_intermediates` (other
  servers' chains, intermediates the caller knows): reaching the bundle only then is `incomplete_chain`
  (the server would send a chain Exchange Online cannot complete), never reaching it is `unknown_root`.
  A self-signed certificate outside the bundle is both `self_signed` and `unknown_root`: both are true.
- The verifier itself runs at a time inside the leaf's validity window (now, clamped), so an expired
  leaf does not mask other chain defects. When it still refuses and no reason above explains the refusal,
  its own message becomes the reason `chain_invalid` (e.g. an expired intermediate, a CA without
  keyUsage, a leaf without subjectAltName).

Exchange's own Status and RootCAType are copied into the verdict for the report; they prove nothing.
"""

from __future__ import annotations

import datetime
import functools
import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

try:
    from cryptography import x509
    from cryptography.x509.verification import DNSName, PolicyBuilder, Store, VerificationError
except ImportError:  # pragma: no cover - ansible-core requires cryptography; see _model.CRYPTOGRAPHY_IMPORT_ERROR
    pass

from . import _model

PARSE_ERROR = "parse_error"
SELF_SIGNED = "self_signed"
UNKNOWN_ROOT = "unknown_root"
INCOMPLETE_CHAIN = "incomplete_chain"
CHAIN_INVALID = "chain_invalid"
EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"
NAME_MISMATCH = "name_mismatch"
NO_PRIVATE_KEY = "no_private_key"
WEAK_KEY = "weak_key"
WEAK_SIGNATURE = "weak_signature"
NOT_SERVER_AUTH = "not_server_auth"

# Every reason code, in the order a verdict lists them.
REASON_CODES = (
    PARSE_ERROR,
    SELF_SIGNED,
    UNKNOWN_ROOT,
    INCOMPLETE_CHAIN,
    CHAIN_INVALID,
    EXPIRED,
    NOT_YET_VALID,
    NAME_MISMATCH,
    NO_PRIVATE_KEY,
    WEAK_KEY,
    WEAK_SIGNATURE,
    NOT_SERVER_AUTH,
)

# Reasons that by themselves make cryptography's verifier refuse: when one applies, the verifier's
# refusal says nothing new and is not reported again as chain_invalid.
_VERIFIER_REFUSES = frozenset({SELF_SIGNED, UNKNOWN_ROOT, INCOMPLETE_CHAIN, NAME_MISMATCH, WEAK_SIGNATURE, NOT_SERVER_AUTH})

WEAK_SIGNATURE_HASHES = frozenset({"md2", "md4", "md5", "sha1"})
MIN_EC_KEY_BITS = 256

# Longer paths than this do not occur in the Web PKI; the bound keeps a hostile pool from making the
# search expensive.
_MAX_PATH_LENGTH = 8


class TrustBundleError(Exception):
    """The trust bundle cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class CertificatePool:
    """Certificates indexed by subject, so finding the issuers of one is a lookup, not a scan."""

    certificates: tuple[x509.Certificate, ...]
    by_subject: Mapping[x509.Name, tuple[x509.Certificate, ...]] = field(repr=False, compare=False)
    members: frozenset[x509.Certificate] = field(repr=False, compare=False)

    @classmethod
    def of(cls, certificates: Iterable[x509.Certificate]) -> CertificatePool:
        unique = tuple(dict.fromkeys(certificates))
        by_subject: dict[x509.Name, tuple[x509.Certificate, ...]] = {}
        for cert in unique:
            by_subject[cert.subject] = by_subject.get(cert.subject, ()) + (cert,)
        return cls(certificates=unique, by_subject=by_subject, members=frozenset(unique))

    def issuers_of(self, cert: x509.Certificate) -> tuple[x509.Certificate, ...]:
        """Candidates only: their subject is cert's issuer; the signature is not checked here."""
        return self.by_subject.get(cert.issuer, ())

    def __contains__(self, cert: x509.Certificate) -> bool:
        return cert in self.members

    def __add__(self, other: CertificatePool) -> CertificatePool:
        return CertificatePool.of(self.certificates + other.certificates)


def _as_pool(certificates: CertificatePool | Iterable[x509.Certificate]) -> CertificatePool:
    return certificates if isinstance(certificates, CertificatePool) else CertificatePool.of(certificates)


def server_pool(certificates: Iterable[_model.Certificate], chains: Iterable[_model.CertificateChain] = ()) -> CertificatePool:
    """Everything a server holds and can send: its certificates and the chains Windows builds for them."""
    held = [certificate.x509.cert for certificate in certificates if certificate.x509 is not None]
    for chain in chains:
        held.extend(chain.certificates)
    return CertificatePool.of(held)


@dataclass(frozen=True)
class TrustStore:
    """The roots Exchange Online is assumed to trust."""

    source: str  # the bundle's path, for reports
    anchors: CertificatePool
    # Intermediate CA certificates found in the bundle: never anchors, only known, so that a chain the
    # server cannot complete is reported as incomplete_chain rather than unknown_root.
    intermediates: CertificatePool
    skipped: tuple[str, ...]  # PEM blocks that could not be read, with the reason
    verifier_store: Store = field(repr=False, compare=False)


_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


def _pem_blocks(data: bytes) -> list[bytes]:
    blocks, start = [], data.find(_PEM_BEGIN)
    while start != -1:
        end = data.find(_PEM_END, start)
        if end == -1:
            blocks.append(data[start:])
            break
        blocks.append(data[start : end + len(_PEM_END)])
        start = data.find(_PEM_BEGIN, end)
    return blocks


def trust_store_from_pem(data: bytes, source: str) -> TrustStore:
    """A TrustStore from PEM text. One unreadable block is skipped (and listed), so one odd root in a
    large corporate bundle does not stop a fleet run; a bundle with no readable certificate is an error."""
    if _model.CRYPTOGRAPHY_IMPORT_ERROR is not None:
        raise TrustBundleError("reading trust bundle %s needs the Python package cryptography: %s" % (source, _model.CRYPTOGRAPHY_IMPORT_ERROR))
    anchors, intermediates, skipped = [], [], []
    with _model.quiet_certificate_loading():
        try:
            # Every worker process reads the bundle again (certifi's: over a hundred roots), so the
            # common case - every block readable - is read in one call.
            certificates = x509.load_pem_x509_certificates(data)
        except _model.CERTIFICATE_READ_ERRORS:
            certificates = []
            for position, block in enumerate(_pem_blocks(data), start=1):
                try:
                    certificates.append(x509.load_pem_x509_certificate(block))
                except _model.CERTIFICATE_READ_ERRORS as exc:
                    skipped.append("certificate %d: %s" % (position, exc))
        for certificate in certificates:
            (anchors if certificate.issuer == certificate.subject else intermediates).append(certificate)
    if not anchors:
        if skipped:
            raise TrustBundleError("trust bundle %s holds no readable certificate (%s)" % (source, "; ".join(skipped)))
        raise TrustBundleError("trust bundle %s holds no PEM certificate (-----BEGIN CERTIFICATE-----); a PEM bundle is expected" % source)
    return TrustStore(source=source, anchors=CertificatePool.of(anchors), intermediates=CertificatePool.of(intermediates),
                      skipped=tuple(skipped), verifier_store=Store(anchors))


def _default_bundle_path() -> str:
    try:
        import certifi  # only the default bundle needs it
    except ImportError:
        raise TrustBundleError(
            "the default trust bundle (Mozilla's roots) needs the Python package certifi on the Ansible "
            "controller: install it (pip install certifi) or give a PEM trust bundle path"
        ) from None
    # certifi.where() goes through importlib.resources (milliseconds, in every worker process); the
    # file sits next to the package unless certifi is imported from a zip.
    beside = os.path.join(os.path.dirname(certifi.__file__), "cacert.pem")
    return beside if os.path.isfile(beside) else certifi.where()


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, size: int) -> TrustStore:
    # mtime and size are part of the key so that a bundle replaced during a long run is read again.
    try:
        with open(path, "rb") as bundle:
            data = bundle.read()
    except OSError as exc:
        raise TrustBundleError("cannot read trust bundle %s: %s" % (path, exc.strerror or exc)) from None
    return trust_store_from_pem(data, path)


def load_trust_bundle(path: str | None = None) -> TrustStore:
    """The trust bundle at path (PEM), or Mozilla's roots from certifi when path is None.

    Loaded once per file and process: fleet runs evaluate thousands of certificates against it.
    Raises TrustBundleError with a message for the user.
    """
    resolved = os.path.realpath(os.path.expanduser(path if path is not None else _default_bundle_path()))
    try:
        status = os.stat(resolved)
    except OSError as exc:
        raise TrustBundleError("cannot read trust bundle %s: %s" % (resolved, exc.strerror or exc)) from None
    return _load_cached(resolved, status.st_mtime_ns, status.st_size)


@dataclass(frozen=True)
class Reason:
    code: str  # one of REASON_CODES
    text: str  # for humans; may change between releases, unlike the code


@dataclass(frozen=True)
class ChainLink:
    subject: str  # as Exchange shows names
    thumbprint: str


@dataclass(frozen=True)
class Verdict:
    thumbprint: str
    trusted: bool  # Exchange Online can be expected to accept the certificate for one of `names`
    reasons: tuple[Reason, ...]  # all that apply, in REASON_CODES order; empty exactly when trusted
    chain: tuple[ChainLink, ...]  # leaf first: the validated path, else the longest path found
    chain_validated: bool  # whether `chain` was validated by cryptography's verifier
    names: tuple[str, ...]  # the host names the certificate was judged for
    status: str | None  # Exchange's Status, beside the verdict, not part of it
    root_ca_type: str | None  # Exchange's RootCAType, likewise
    # incomplete_chain: the intermediates the server lacks, nearest the leaf first. Importing them into
    # the server's Intermediate Certification Authorities store is the whole fix when nothing else applies.
    missing_intermediates: tuple[ChainLink, ...] = ()
    # unknown_root where the path stops at a certificate that is not self-signed: the name of its issuer,
    # which neither the server nor the trust bundle holds. With a bundle of roots only (certifi's) that is
    # also how a missing public intermediate looks, so the advice offers both fixes.
    missing_issuer: str | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(reason.code for reason in self.reasons)


# Signature checks are the costly part of a path search, and a fleet repeats the same pairs (the same
# hybrid certificate and intermediate on every server), so they are computed once per pair.
_signed_by = functools.lru_cache(maxsize=4096)(_model.signed_by)


def _search_path(leaf: x509.Certificate, pool: CertificatePool, anchors: CertificatePool,
                 extra: CertificatePool | None = None) -> tuple[tuple[x509.Certificate, ...], bool]:
    """(path, reached): a path from leaf to a trust anchor through pool (and extra), or the longest path found.

    Depth-first over issuer candidates (indexed by name) whose signature verifies; ignores dates and
    policy on purpose, those are separate reasons.
    """

    def extend(path):
        tip = path[-1]
        if tip in anchors:
            return path, True
        longest = path
        if len(path) < _MAX_PATH_LENGTH:
            candidates = anchors.issuers_of(tip) + pool.issuers_of(tip) + (extra.issuers_of(tip) if extra else ())
            for issuer in candidates:
                if issuer in path or not _signed_by(tip, issuer):
                    continue
                found, reached = extend(path + (issuer,))
                if reached:
                    return found, True
                if len(found) > len(longest):
                    longest = found
        return longest, False

    return extend((leaf,))


def _subject(cert: x509.Certificate) -> str:
    return _model.windows_name(cert.subject)


def _reachability(
    leaf, server: CertificatePool, known: CertificatePool, store: TrustStore
) -> tuple[tuple[x509.Certificate, ...], list[Reason], tuple[x509.Certificate, ...]]:
    """The path the server's own certificates give, unknown_root/incomplete_chain when it fails, and the
    intermediates the server lacks (incomplete_chain only)."""
    path, reached = _search_path(leaf, server, store.anchors)
    if reached:
        return path, [], ()
    # Searched side by side rather than as server + known: merging the pools per certificate would make a
    # server with thousands of certificates quadratic.
    completed, reached_with_known = _search_path(leaf, server, store.anchors, extra=known)
    if reached_with_known:
        missing = [cert for cert in completed[1:-1] if cert not in server]
        return path, [
            Reason(
                INCOMPLETE_CHAIN,
                "chains to %s only through %s, which the server does not hold; Exchange Online does not fetch missing intermediates"
                % (_subject(completed[-1]), ", ".join("%s (%s)" % (_subject(cert), _model.sha1_thumbprint(cert)) for cert in missing)),
            )
        ], tuple(missing)
    top = path[-1]
    if top.issuer != top.subject:
        return path, [Reason(UNKNOWN_ROOT, "the chain ends at %s, whose issuer %s is neither on the server nor in the trust bundle %s"
                             % (_subject(top), _model.windows_name(top.issuer), store.source))], ()
    return path, [Reason(UNKNOWN_ROOT, "the chain ends at %s, which is not in the trust bundle %s" % (_subject(top), store.source))], ()


def import_intermediates_advice(missing: Iterable[tuple[str, str]]) -> str:
    """What to do when a certificate fails only because the server lacks intermediates: import them
    into the server's Intermediate Certification Authorities store (Windows builds, and transport
    sends, the chain from its local stores; Exchange Online does not fetch missing intermediates). The
    certificate itself is fine: a new one is not needed. missing: (subject, thumbprint) pairs."""
    unique = list(dict.fromkeys(missing))
    named = ", ".join("%s (%s)" % pair for pair in unique) if unique else "the chain needs"
    return ("Import the intermediate CA certificate%s %s into this server's Intermediate Certification Authorities store "
            "(Import-Certificate -FilePath <intermediate>.cer -CertStoreLocation Cert:\\LocalMachine\\CA; the file from the "
            "CA, or exported from a server whose chain is complete), then restart MSExchangeTransport "
            "(Restart-Service MSExchangeTransport) so that transport sends the full chain. No new certificate is needed."
            % ("s" if len(unique) > 1 else "", named))


def _validity_reasons(facts: _model.X509Facts, now: datetime.datetime) -> list[Reason]:
    if now > facts.not_after:
        return [Reason(EXPIRED, "expired on %s" % _model.iso_utc(facts.not_after))]
    if now < facts.not_before:
        return [Reason(NOT_YET_VALID, "not valid before %s" % _model.iso_utc(facts.not_before))]
    return []


def weak_key(key_type: str | None, key_bits: int, min_key_bits: int) -> bool:
    """The one key-size rule: RSA/DSA below min_key_bits, EC below MIN_EC_KEY_BITS."""
    return (key_type in ("RSA", "DSA") and key_bits < min_key_bits) or (key_type == "EC" and key_bits < MIN_EC_KEY_BITS)


def _key_reasons(facts: _model.X509Facts, min_key_bits: int) -> list[Reason]:
    if facts.key_bits is None:
        return [Reason(WEAK_KEY, "the key algorithm is not supported")]
    if not weak_key(facts.key_type, facts.key_bits, min_key_bits):
        return []
    if facts.key_type == "EC":
        return [Reason(WEAK_KEY, "EC key on a %d-bit curve; at least %d required" % (facts.key_bits, MIN_EC_KEY_BITS))]
    return [Reason(WEAK_KEY, "%s key of %d bits; at least %d required" % (facts.key_type, facts.key_bits, min_key_bits))]


def _signature_reasons(facts: _model.X509Facts) -> list[Reason]:
    if facts.signature_hash in WEAK_SIGNATURE_HASHES:
        return [Reason(WEAK_SIGNATURE, "signed with %s" % facts.signature_hash.upper())]
    return []


def _usage_reasons(facts: _model.X509Facts) -> list[Reason]:
    # anyExtendedKeyUsage is not enough, as for cryptography's verifier and the CA/Browser Forum rules.
    if facts.ekus is not None and "serverAuth" not in facts.ekus:
        return [Reason(NOT_SERVER_AUTH, "extended key usage %s lacks serverAuth" % (", ".join(facts.ekus) or "(empty)"))]
    return []


def _private_key_reasons(certificate: _model.Certificate) -> list[Reason]:
    # Only a reported False counts: None means the property did not come back, which proves nothing.
    if certificate.has_private_key is False:
        return [Reason(NO_PRIVATE_KEY, "the server has no private key for it, so it cannot present it")]
    return []


def _name_reasons(names: Sequence[str], covered: Sequence[str], facts: _model.X509Facts) -> list[Reason]:
    if covered:
        return []
    presented = facts.dns_names or ((facts.subject_cn,) if facts.subject_cn else ())
    return [Reason(NAME_MISMATCH, "covers %s, not %s" % (", ".join(presented) or "no name", ", ".join(names)))]


def _ancestors(leaf: x509.Certificate, pool: CertificatePool) -> list:
    """The certificates of pool that can be on a path above leaf (by issuer name, up to the path length
    limit): all the verifier needs, instead of every certificate the server holds."""
    found, frontier = {}, [leaf]
    for _depth in range(_MAX_PATH_LENGTH):
        frontier = [issuer for cert in frontier for issuer in pool.issuers_of(cert) if issuer not in found and issuer != leaf]
        if not frontier:
            break
        found.update(dict.fromkeys(frontier))
    return list(found)


def _validate(leaf, server: CertificatePool, store: TrustStore, names: Sequence[str], at: datetime.datetime):
    """(validated path, None) from cryptography's serverAuth verifier, or (None, its objections)."""
    objections = []
    for name in names:
        try:
            # The verifier, not DNSName, rejects single-label names such as a server's NetBIOS name.
            verifier = PolicyBuilder().store(store.verifier_store).time(at).build_server_verifier(DNSName(name))
        except ValueError:
            objections.append("%s is not a DNS name" % name)
            continue
        try:
            return tuple(verifier.verify(leaf, _ancestors(leaf, server))), None
        except VerificationError as exc:
            objections.append(str(exc))
    return None, "; ".join(dict.fromkeys(objections)) or "no name to validate"


def _links(path: Iterable[x509.Certificate]) -> tuple[ChainLink, ...]:
    return tuple(ChainLink(subject=_subject(cert), thumbprint=_model.sha1_thumbprint(cert)) for cert in path)


def _ordered(reasons: Iterable[Reason]) -> tuple[Reason, ...]:
    return tuple(sorted(reasons, key=lambda reason: REASON_CODES.index(reason.code)))


def evaluate(
    certificate: _model.Certificate,
    *,
    intermediates: CertificatePool | Iterable[x509.Certificate],
    store: TrustStore,
    names: Sequence[str],
    now: datetime.datetime,
    min_key_bits: int = 2048,
    known_intermediates: CertificatePool | Iterable[x509.Certificate] = (),
) -> Verdict:
    """Judge one certificate as the certificate a server presents to Exchange Online.

    intermediates: what the server holds and sends (server_pool()); pass a CertificatePool to share
    the index across many calls. known_intermediates: certificates available elsewhere, used only to
    tell incomplete_chain from unknown_root. names: the FQDNs facing Exchange Online; the certificate
    must cover one of them. now: aware datetime.
    """
    names = tuple(name for name in names if name)
    if not names:
        raise ValueError("names must hold at least one host name facing Exchange Online")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    exchange_view = dict(thumbprint=certificate.thumbprint, names=names, status=certificate.status, root_ca_type=certificate.root_ca_type)
    facts = certificate.x509
    if facts is None:
        return Verdict(
            trusted=False,
            reasons=(Reason(PARSE_ERROR, certificate.parse_error or "no certificate data"),),
            chain=(),
            chain_validated=False,
            **exchange_view,
        )

    server = _as_pool(intermediates)
    covered = [name for name in names if _model.name_matches(name, certificate)]
    reasons = [Reason(PARSE_ERROR, certificate.parse_error)] if certificate.parse_error else []
    if facts.self_signed:
        reasons.append(Reason(SELF_SIGNED, "self-signed: no public CA vouches for it"))
    path, chain_reasons, missing = _reachability(facts.cert, server, _as_pool(known_intermediates), store)
    reasons += chain_reasons
    reasons += _validity_reasons(facts, now)
    reasons += _name_reasons(names, covered, facts)
    reasons += _private_key_reasons(certificate)
    reasons += _key_reasons(facts, min_key_bits)
    reasons += _signature_reasons(facts)
    reasons += _usage_reasons(facts)

    # Inside the leaf's validity window, so that expiry (already a reason) does not hide chain defects.
    validation_time = min(max(now, facts.not_before), facts.not_after)
    validated, objections = _validate(facts.cert, server, store, covered, validation_time)
    if validated is None and not _VERIFIER_REFUSES.intersection(reason.code for reason in reasons):
        reasons.append(Reason(CHAIN_INVALID, "path validation failed: %s" % objections))

    return Verdict(
        trusted=not reasons,
        reasons=_ordered(reasons),
        chain=_links(validated if validated is not None else path),
        chain_validated=validated is not None,
        missing_intermediates=_links(missing),
        missing_issuer=(_model.windows_name(path[-1].issuer) if UNKNOWN_ROOT in (r.code for r in reasons)
                        and path[-1].issuer != path[-1].subject else None),
        **exchange_view,
    )


def _read_default_bundle_early() -> None:
    """Read certifi's bundle when this module is first imported.

    ansible-playbook imports a task's action plugin, and so this module, in its main process before it
    forks a worker per host; the workers inherit the parsed bundle from _load_cached instead of each
    reading it again (about 12 ms of CPU per host and task). A problem with it is reported when a task
    uses it, not here."""
    try:
        load_trust_bundle(None)
    except TrustBundleError:
        pass


_read_default_bundle_early()

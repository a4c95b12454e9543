"""Certificate chains as Windows builds them, Exchange's opinion of a certificate, and the cloud gateway.

Three different judges look at the same certificate, and the lab keeps them apart on purpose:
- Windows on the server (Get-HybridmailCertificateChain): chain from the local stores only (My,
  Intermediate CA, Trusted Root), no network; ChainStatus flags like PartialChain or UntrustedRoot.
- Exchange's Status/RootCAType (Get-ExchangeCertificate): CryptoAPI may fetch a missing public
  intermediate through AIA, so a server lacking the intermediate still says "Valid" - while it
  cannot send that intermediate to Exchange Online. Status is an opinion, not proof (exchange-facts).
- The cloud gateway: trusts only the public roots and only the certificates the server sends.
"""

from __future__ import annotations

import datetime
import operator
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from tests.lab import pki

# Order in which the lab reports X509ChainStatusFlags names.
FLAG_ORDER = ("NotTimeValid", "NotSignatureValid", "UntrustedRoot", "PartialChain")

_SIGNATURE_CACHE: dict = {}
_INDEX_CACHE: dict = {}
_THUMBPRINT = operator.attrgetter("thumbprint")


def issued_by(child: pki.Issued, issuer: pki.Issued) -> bool:
    """Name chaining plus a real signature check (cached: fleets share certificates)."""
    if child.cert.issuer != issuer.cert.subject:
        return False
    key = (child.thumbprint, issuer.thumbprint)
    cached = _SIGNATURE_CACHE.get(key)
    if cached is None:
        cached = _verify(child, issuer)
        if len(_SIGNATURE_CACHE) > 100_000:
            _SIGNATURE_CACHE.clear()
        _SIGNATURE_CACHE[key] = cached
    return cached


def _verify(child: pki.Issued, issuer: pki.Issued) -> bool:
    public_key = issuer.cert.public_key()
    cert = child.cert
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                              cert.signature_hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def time_valid(issued: pki.Issued, now: datetime.datetime) -> bool:
    return issued.not_before <= now <= issued.not_after


@dataclass
class Chain:
    elements: list  # pki.Issued, leaf first
    status: list  # X509ChainStatusFlags names; empty = NoError
    root_ca_type: str | None  # how the root is trusted locally (RootCAType), None when not trusted

    @property
    def thumbprints(self) -> list:
        return [element.thumbprint for element in self.elements]


def _by_subject(candidates) -> dict:
    """{subject: {thumbprint: candidate}}, cached by the candidates' thumbprints: a server builds a chain
    for each of its certificates through the same stores, and hashing x509.Name is slow enough that
    indexing them again per certificate made a server with thousands of certificates quadratic."""
    candidates = list(candidates)
    key = tuple(map(_THUMBPRINT, candidates))
    index = _INDEX_CACHE.get(key)
    if index is None:
        index = {}
        for candidate in candidates:
            index.setdefault(candidate.cert.subject, {})[candidate.thumbprint] = candidate
        if len(_INDEX_CACHE) > 64:
            _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = index
    return index


def build_chain(leaf: pki.Issued, candidates, trusted_roots: dict, now: datetime.datetime) -> Chain:
    """Chain leaf -> root through `candidates` (the stores searched); trusted_roots: thumbprint -> RootCAType."""
    by_subject = _by_subject(candidates)
    elements, seen, current = [leaf], {leaf.thumbprint}, leaf
    while not current.is_self_signed:
        options = [
            option
            for thumbprint, option in by_subject.get(current.cert.issuer, {}).items()
            if thumbprint not in seen and issued_by(current, option)
        ]
        if not options:
            break
        # Like CryptoAPI's chain quality: trusted root first, then time-valid, then the newest.
        current = max(
            options,
            key=lambda option: (option.thumbprint in trusted_roots, time_valid(option, now), option.not_after),
        )
        elements.append(current)
        seen.add(current.thumbprint)
    flags = set()
    if not all(time_valid(element, now) for element in elements):
        flags.add("NotTimeValid")
    top = elements[-1]
    root_ca_type = None
    if top.is_self_signed:
        if not issued_by(top, top):
            flags.add("NotSignatureValid")
        root_ca_type = trusted_roots.get(top.thumbprint)
        if root_ca_type is None:
            flags.add("UntrustedRoot")
    else:
        flags.add("PartialChain")
    return Chain(elements, [flag for flag in FLAG_ORDER if flag in flags], root_ca_type)


def exchange_opinion(chain: Chain) -> tuple:
    """(Status, RootCAType) as Get-ExchangeCertificate reports them, from a chain built with AIA help."""
    if "NotTimeValid" in chain.status:
        status = "DateInvalid"
    elif "NotSignatureValid" in chain.status:
        status = "Invalid"
    elif "UntrustedRoot" in chain.status or "PartialChain" in chain.status:
        status = "Untrusted"
    else:
        status = "Valid"
    return status, chain.root_ca_type or "None"


@dataclass
class GatewayVerdict:
    accepted: bool
    reason: str | None  # None when accepted; else UntrustedRoot / PartialChain / NotTimeValid
    sent_chain: list  # thumbprints the server sent, leaf first

    def to_json(self) -> dict:
        return {"accepted": self.accepted, "reason": self.reason, "sent_chain": list(self.sent_chain)}


def gateway_verdict(sent: list, public_roots: list, now: datetime.datetime) -> GatewayVerdict:
    """Exchange Online's check of the chain a server sends: public root, every intermediate sent, dates."""
    thumbprints = [element.thumbprint for element in sent]
    root_thumbprints = {root.thumbprint for root in public_roots}
    path = None
    for index, element in enumerate(sent):
        if element.thumbprint in root_thumbprints and index > 0:
            path = sent[:index]  # the server also sent the root; the gateway uses its own copy
            break
        if any(issued_by(element, root) for root in public_roots):
            path = sent[: index + 1]
            break
    if path is None or sent[0].is_self_signed:
        top = sent[-1]
        reason = "UntrustedRoot" if top.is_self_signed else "PartialChain"
        return GatewayVerdict(False, reason, thumbprints)
    if not all(time_valid(element, now) for element in path):
        return GatewayVerdict(False, "NotTimeValid", thumbprints)
    return GatewayVerdict(True, None, thumbprints)

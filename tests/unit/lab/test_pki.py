"""tests/lab/pki.py: keys, .NET-style names, dates and certificates."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.lab import pki

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


# ------------------------------------------------------------------------------------- keys


def test_key_pool_is_cached_and_deterministic():
    first = pki.make_key("rsa", 2048, slot=0)
    assert pki.make_key("rsa", 2048, slot=0) is first
    assert pki.make_key("rsa", 2048, slot=1).public_key().public_numbers() != first.public_key().public_numbers()
    assert first.key_size == 2048
    # Deterministic across processes and machines: the pool derives its primes from fixed seeds.
    modulus = first.public_key().public_numbers().n
    assert hashlib.sha256(str(modulus).encode()).hexdigest()[:16] == "ae3dab5b340cf34d"
    secret = pki.make_key("ec", 256, slot=0).private_numbers().private_value
    assert hashlib.sha256(str(secret).encode()).hexdigest()[:16] == "cfee9508802d6e2e"


@pytest.mark.parametrize("size, curve", [(256, ec.SECP256R1), (384, ec.SECP384R1)])
def test_ec_keys(size, curve):
    key = pki.make_key("ec", size, slot=3)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, curve)
    assert pki.make_key("ec", size, slot=3) is key


def test_key_errors_and_specs():
    with pytest.raises(ValueError):
        pki.make_key("dsa")
    with pytest.raises(ValueError):
        pki.make_key("ec", 255)
    assert pki.parse_key_spec("rsa4096") == ("rsa", 4096)
    assert pki.parse_key_spec("ec384") == ("ec", 384)
    assert pki.parse_key_spec("ECDSA-256") == ("ec", 256)
    assert pki.parse_key_spec("rsa") == ("rsa", 2048)
    with pytest.raises(ValueError):
        pki.parse_key_spec("rsa-large")


# ------------------------------------------------------------------------------------ names


def test_parse_name_keeps_non_ascii_and_net_order():
    name = pki.parse_name("CN=mail.contoso.com, O=Müller GmbH, C=DE")
    # DER order is the reverse of the display order (country first).
    assert [rdn.rfc4514_string() for rdn in name.rdns] == ["C=DE", "O=Müller GmbH", "CN=mail.contoso.com"]
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Müller GmbH"
    assert pki.format_name(name) == "CN=mail.contoso.com, O=Müller GmbH, C=DE"


@pytest.mark.parametrize(
    "text, shown",
    [
        ('CN=mail.mueller.cz, O="Česká pošta, s.p.", C=CZ', 'CN=mail.mueller.cz, O="Česká pošta, s.p.", C=CZ'),
        ("CN=a,O=b,C=US", "CN=a, O=b, C=US"),
        ("CN=x, ST=Bayern, E=admin@contoso.com", "CN=x, S=Bayern, E=admin@contoso.com"),
        ("CN=Contoso Issuing CA 01, DC=contoso, DC=com", "CN=Contoso Issuing CA 01, DC=contoso, DC=com"),
        (r"CN=a\, b", 'CN="a, b"'),
        ('CN="say ""hi"""', 'CN="say ""hi"""'),
        ("CN=web + OU=Ops, O=Contoso", "CN=web + OU=Ops, O=Contoso"),
        ("OID.2.5.4.97=VATDE-123, CN=x", "OID.2.5.4.97=VATDE-123, CN=x"),
    ],
)
def test_name_round_trip(text, shown):
    assert pki.format_name(pki.parse_name(text)) == shown
    assert pki.normalize_name(shown) == shown


@pytest.mark.parametrize("text", ["", "mail.contoso.com", "XX=1", 'CN="unbalanced'])
def test_parse_name_rejects(text):
    with pytest.raises(ValueError):
        pki.parse_name(text)


# ------------------------------------------------------------------------------------ dates


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("+20d", NOW + datetime.timedelta(days=20)),
        ("-1y", NOW - datetime.timedelta(days=365)),
        ("+12h", NOW + datetime.timedelta(hours=12)),
        ("-90m", NOW - datetime.timedelta(minutes=90)),
        ("+2w", NOW + datetime.timedelta(weeks=2)),
        ("now", NOW),
        ("2027-01-31", datetime.datetime(2027, 1, 31, tzinfo=datetime.timezone.utc)),
        ("2027-01-31T10:00:00Z", datetime.datetime(2027, 1, 31, 10, tzinfo=datetime.timezone.utc)),
    ],
)
def test_parse_when(spec, expected):
    assert pki.parse_when(spec, NOW) == expected


def test_parse_when_rejects_garbage():
    with pytest.raises(ValueError):
        pki.parse_when("soon", NOW)


# ----------------------------------------------------------------------------- certificates


@pytest.fixture(scope="module")
def hierarchy():
    root = pki.make_ca("CN=Lab Root, O=Lab, C=US", now=NOW, not_before="-1y", not_after="+10y")
    intermediate = pki.make_ca("CN=Lab TLS CA, O=Lab, C=US", root, now=NOW, key_slot=1, path_length=0)
    return root, intermediate


def test_leaf_chains_to_root_with_rfc5280_validation(hierarchy):
    root, intermediate = hierarchy
    leaf = pki.make_leaf("CN=mail.contoso.com, O=Contoso, C=US", intermediate, sans=["mail.contoso.com"],
                         now=NOW, not_before="-1d", not_after="+90d", key_slot=2)
    store = verification.Store([root.cert])
    verifier = (
        verification.PolicyBuilder().store(store).time(NOW).build_server_verifier(x509.DNSName("mail.contoso.com"))
    )
    chain = verifier.verify(leaf.cert, [intermediate.cert])
    assert [c.subject for c in chain] == [leaf.cert.subject, intermediate.cert.subject, root.cert.subject]
    assert leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    assert leaf.issuer == "CN=Lab TLS CA, O=Lab, C=US"
    assert leaf.dns_names == ["mail.contoso.com"]
    assert not leaf.is_self_signed and root.is_self_signed


def test_issued_forms(hierarchy):
    intermediate = hierarchy[1]
    leaf = pki.make_leaf("CN=x", intermediate, now=NOW)
    assert leaf.der == leaf.cert.public_bytes(pki.serialization.Encoding.DER)
    assert leaf.pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert leaf.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert len(leaf.thumbprint) == 40 and leaf.thumbprint == leaf.thumbprint.upper()
    assert leaf.not_before == NOW - datetime.timedelta(days=1)
    assert leaf.not_after == leaf.not_before + datetime.timedelta(days=365)


def test_same_inputs_same_thumbprint(hierarchy):
    intermediate = hierarchy[1]
    first = pki.make_leaf("CN=x", intermediate, now=NOW, key_kind="ec")
    second = pki.make_leaf("CN=x", intermediate, now=NOW, key_kind="ec")
    assert first.thumbprint == second.thumbprint
    assert pki.make_leaf("CN=y", intermediate, now=NOW, key_kind="ec").thumbprint != first.thumbprint


@pytest.mark.parametrize("hash_name", ["sha1", "sha256", "sha384", "sha512"])
def test_signature_hashes(hierarchy, hash_name):
    intermediate = hierarchy[1]
    leaf = pki.make_leaf("CN=legacy", intermediate, now=NOW, hash=hash_name)
    assert leaf.cert.signature_hash_algorithm.name == hash_name
    intermediate.cert.public_key().verify(
        leaf.cert.signature, leaf.cert.tbs_certificate_bytes, pki.padding.PKCS1v15(), leaf.cert.signature_hash_algorithm
    )


def test_sha1_with_ec_issuer():
    root = pki.make_ca("CN=EC Root", key_kind="ec", key_size=384, now=NOW)
    leaf = pki.make_leaf("CN=ec-legacy", root, key_kind="ec", hash="sha1", now=NOW)
    assert leaf.cert.signature_hash_algorithm.name == "sha1"
    root.cert.public_key().verify(leaf.cert.signature, leaf.cert.tbs_certificate_bytes,
                                  ec.ECDSA(leaf.cert.signature_hash_algorithm))


def test_key_kinds_and_sizes(hierarchy):
    intermediate = hierarchy[1]
    assert pki.make_leaf("CN=a", intermediate, key_kind="ec", key_size=384, now=NOW).cert.public_key().key_size == 384
    small = pki.make_leaf("CN=b", intermediate, key_kind="rsa", key_size=1024, now=NOW)
    assert isinstance(small.cert.public_key(), rsa.RSAPublicKey) and small.cert.public_key().key_size == 1024


def test_sans_with_ip_and_email(hierarchy):
    intermediate = hierarchy[1]
    leaf = pki.make_leaf("CN=host", intermediate, sans=["host.lab", "127.0.0.1", "email:a@b.c"], now=NOW)
    san = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.RFC822Name) == ["a@b.c"]


def test_self_signed_leaf():
    leaf = pki.make_leaf("CN=mail.contoso.com", None, sans=["mail.contoso.com"], now=NOW)
    assert leaf.is_self_signed and leaf.subject == leaf.issuer


def test_exchange_self_signed_shape():
    cert = pki.make_exchange_self_signed("EX01", "ex01.contoso.com", not_before="-400d", now=NOW)
    assert cert.subject == cert.issuer == "CN=EX01"
    assert cert.dns_names == ["EX01", "ex01.contoso.com"]
    assert (cert.not_after - cert.not_before).days >= 5 * 365
    assert cert.cert.public_key().key_size == 2048


def test_exchange_auth_certificate_shape():
    cert = pki.make_exchange_auth_certificate(now=NOW)
    assert cert.subject == "CN=Microsoft Exchange Server Auth Certificate"
    assert cert.dns_names == [] and cert.is_self_signed


def test_pem_bundle(hierarchy):
    root, intermediate = hierarchy
    bundle = pki.pem_bundle([root, intermediate])
    assert [c.subject for c in x509.load_pem_x509_certificates(bundle)] == [root.cert.subject, intermediate.cert.subject]

"""Trust verdicts (plugins/plugin_utils/_trust.py) over certificates made with tests/lab/pki.py."""

from __future__ import annotations

import base64
import datetime
import os
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _args, _model, _trust
from tests.lab import pki

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
FQDN = "mail.contoso.com"
SUBJECT = "CN=mail.contoso.com, O=Contoso, C=US"
# CAs exist long before and after every leaf here, so that only the leaf's dates are ever at stake.
CA_VALIDITY = dict(not_before="2020-01-01", not_after="2040-01-01", now=NOW)


@pytest.fixture(scope="module")
def public_root():
    return pki.make_ca("CN=Lab Public Root R1, O=Lab Trust Services, C=US", key_kind="ec", key_size=384, key_slot=1, **CA_VALIDITY)


@pytest.fixture(scope="module")
def public_ca(public_root):
    # RSA, so that tests can re-sign its leaves with MD5.
    return pki.make_ca("CN=Lab Public TLS CA 1, O=Lab Trust Services, C=US", public_root, key_kind="rsa", key_slot=2, **CA_VALIDITY)


@pytest.fixture(scope="module")
def enterprise_root():
    return pki.make_ca("CN=Contoso Enterprise Root CA, DC=contoso, DC=com", key_kind="ec", key_slot=3, **CA_VALIDITY)


@pytest.fixture(scope="module")
def enterprise_ca(enterprise_root):
    return pki.make_ca("CN=Contoso Issuing CA, DC=contoso, DC=com", enterprise_root, key_kind="ec", key_slot=4, **CA_VALIDITY)


@pytest.fixture(scope="module")
def store(public_root):
    return _trust.trust_store_from_pem(public_root.pem, "lab-public-roots.pem")


@pytest.fixture(scope="module")
def make(public_ca):
    """A leaf for mail.contoso.com from the public CA, valid around NOW, unless told otherwise."""

    def make_leaf(issuer=public_ca, subject=SUBJECT, **options):
        options.setdefault("sans", [FQDN, "autodiscover.contoso.com"])
        options.setdefault("not_before", NOW - datetime.timedelta(days=30))
        options.setdefault("not_after", NOW + datetime.timedelta(days=335))
        return pki.make_leaf(subject, issuer, now=NOW, **options)

    return make_leaf


@pytest.fixture(scope="module")
def judge(public_ca, store, exchange_certificate):
    """evaluate() as a server holding the public intermediate would run it."""

    def run(issued_or_der, *, intermediates=None, names=(FQDN,), known=(), min_key_bits=2048, now=NOW, **reported):
        certificate = issued_or_der if isinstance(issued_or_der, _model.Certificate) else exchange_certificate(issued_or_der, **reported)
        return _trust.evaluate(
            certificate,
            intermediates=[public_ca.cert] if intermediates is None else intermediates,
            store=store,
            names=names,
            now=now,
            min_key_bits=min_key_bits,
            known_intermediates=known,
        )

    return run


# ---------------------------------------------------------------------------------------------
# Trusted
# ---------------------------------------------------------------------------------------------


def test_trusted_with_the_full_chain(make, judge, public_ca, public_root):
    leaf = make()
    verdict = judge(leaf, Status="Untrusted", RootCAType="Enterprise")
    assert verdict.trusted and verdict.reasons == ()
    assert verdict.chain_validated
    assert [link.thumbprint for link in verdict.chain] == [leaf.thumbprint, public_ca.thumbprint, public_root.thumbprint]
    assert verdict.chain[1].subject == "CN=Lab Public TLS CA 1, O=Lab Trust Services, C=US"
    # Exchange's opinion travels with the verdict but does not decide it.
    assert (verdict.status, verdict.root_ca_type) == ("Untrusted", "Enterprise")
    assert verdict.thumbprint == leaf.thumbprint and verdict.names == (FQDN,)


@pytest.mark.parametrize("size", [256, 384])
def test_ecc_leaf_is_trusted(make, judge, size):
    assert judge(make(key_kind="ec", key_size=size)).trusted


def test_one_covered_name_is_enough(make, judge):
    assert judge(make(), names=("smtp.fabrikam.com", FQDN)).trusted


@pytest.mark.parametrize("name, trusted", [("mail.contoso.com", True), ("contoso.com", False), ("a.mail.contoso.com", False)])
def test_wildcard_certificate(make, judge, name, trusted):
    verdict = judge(make(sans=["*.contoso.com"]), names=(name,))
    assert verdict.trusted is trusted
    assert verdict.codes == (() if trusted else (_trust.NAME_MISMATCH,))


def test_leaf_without_eku_is_trusted(make, judge):
    assert judge(make(eku=None)).trusted


def test_unknown_private_key_state_is_not_a_reason(make, judge):
    # Over remote PowerShell HasPrivateKey can be missing: that proves nothing either way.
    assert judge(make(), HasPrivateKey=None).trusted


def test_intermediates_from_the_server_chains(make, public_ca, store, exchange_certificate):
    leaf = make()
    certificates = [exchange_certificate(leaf)]
    chain = _model.CertificateChain.from_object(
        {
            "Thumbprint": leaf.thumbprint,
            "ChainThumbprints": [leaf.thumbprint, public_ca.thumbprint],
            "ChainRawData": [base64.b64encode(leaf.der).decode(), base64.b64encode(public_ca.der).decode()],
            "ChainStatus": "NoError",
        }
    )
    pool = _trust.server_pool(certificates, [chain])
    verdict = _trust.evaluate(certificates[0], intermediates=pool, store=store, names=[FQDN], now=NOW)
    assert verdict.trusted


# ---------------------------------------------------------------------------------------------
# Each reason on its own
# ---------------------------------------------------------------------------------------------


def test_incomplete_chain_when_only_another_server_holds_the_intermediate(make, judge, public_ca, public_root):
    leaf = make()
    verdict = judge(leaf, intermediates=[], known=[public_ca.cert])
    assert verdict.codes == (_trust.INCOMPLETE_CHAIN,)
    assert public_ca.thumbprint in verdict.reasons[0].text and public_root.subject in verdict.reasons[0].text
    assert not verdict.chain_validated and [link.thumbprint for link in verdict.chain] == [leaf.thumbprint]


def test_missing_intermediate_nobody_knows_reads_as_unknown_root(make, judge):
    assert judge(make(), intermediates=[]).codes == (_trust.UNKNOWN_ROOT,)


def test_enterprise_ca_is_an_unknown_root(make, judge, enterprise_ca, enterprise_root):
    leaf = make(issuer=enterprise_ca)
    # Exchange calls a domain-trusted enterprise root "Valid": that is no proof for Exchange Online.
    verdict = judge(leaf, intermediates=[enterprise_ca.cert, enterprise_root.cert], Status="Valid", RootCAType="ThirdParty")
    assert verdict.codes == (_trust.UNKNOWN_ROOT,)
    assert "CN=Contoso Enterprise Root CA, DC=contoso, DC=com" in verdict.reasons[0].text
    assert [link.thumbprint for link in verdict.chain] == [leaf.thumbprint, enterprise_ca.thumbprint, enterprise_root.thumbprint]


def test_exchange_self_signed_certificate(judge):
    issued = pki.make_exchange_self_signed("EX01", "ex01.contoso.com", now=NOW)
    verdict = judge(issued, names=("ex01.contoso.com",), RootCAType="Registry")
    assert verdict.codes == (_trust.SELF_SIGNED, _trust.UNKNOWN_ROOT)


def test_expired_is_not_mistaken_for_an_unknown_root(make, judge):
    verdict = judge(make(not_before="2024-01-01", not_after="2025-01-01"))
    assert verdict.codes == (_trust.EXPIRED,)
    assert verdict.reasons[0].text == "expired on 2025-01-01T00:00:00Z"
    assert verdict.chain_validated  # validated inside its own validity window


def test_not_yet_valid(make, judge):
    assert judge(make(not_before=NOW + datetime.timedelta(days=3))).codes == (_trust.NOT_YET_VALID,)


def test_name_mismatch(make, judge):
    verdict = judge(make(), names=("smtp.fabrikam.com",))
    assert verdict.codes == (_trust.NAME_MISMATCH,)
    assert "mail.contoso.com" in verdict.reasons[0].text and "smtp.fabrikam.com" in verdict.reasons[0].text


def test_no_private_key(make, judge):
    assert judge(make(), HasPrivateKey=False).codes == (_trust.NO_PRIVATE_KEY,)


def test_weak_rsa_key(make, judge):
    verdict = judge(make(key_size=1024))
    assert verdict.codes == (_trust.WEAK_KEY,)
    assert verdict.reasons[0].text == "RSA key of 1024 bits; at least 2048 required"


def test_key_size_floor_is_configurable(make, judge):
    assert judge(make(), min_key_bits=3072).codes == (_trust.WEAK_KEY,)


def test_weak_ec_key(make, judge):
    # P-224: below the 256-bit floor, and available in every OpenSSL that cryptography supports.
    key = ec.generate_private_key(ec.SECP224R1())
    assert judge(make(key=key)).codes == (_trust.WEAK_KEY,)


def test_sha1_signature(make, judge):
    assert judge(make(hash="sha1")).codes == (_trust.WEAK_SIGNATURE,)


def test_md5_signature(make, judge, public_ca, der):
    verdict = judge(der.reissue(make().cert, public_ca.key, signature_hash="md5"))
    assert verdict.codes == (_trust.WEAK_SIGNATURE,)
    assert verdict.reasons[0].text == "signed with MD5"


@pytest.mark.parametrize("eku", [("clientAuth",), ("2.5.29.37.0",)])
def test_not_server_auth(make, judge, eku):
    # anyExtendedKeyUsage is not enough either, as for the verifier and the CA/Browser Forum.
    assert judge(make(eku=eku)).codes == (_trust.NOT_SERVER_AUTH,)


def test_unreadable_raw_data(make, judge, exchange_certificate):
    verdict = judge(exchange_certificate(make(), RawData="bm90IGEgY2VydGlmaWNhdGU="))
    assert verdict.codes == (_trust.PARSE_ERROR,) and verdict.chain == ()
    assert verdict.reasons[0].text.startswith("RawData is not a readable X.509 certificate")


def test_thumbprint_mismatch_is_never_trusted(make, judge):
    assert judge(make(), Thumbprint="AB" * 20).codes == (_trust.PARSE_ERROR,)


def test_leaf_without_san_fails_path_validation(make, judge):
    # The CN covers the name (RFC 6125 fallback), but the Web PKI requires a subjectAltName.
    verdict = judge(make(sans=None))
    assert verdict.codes == (_trust.CHAIN_INVALID,)
    assert "subjectAltName" in verdict.reasons[0].text


def test_expired_intermediate_fails_path_validation(make, judge, public_root):
    old_ca = pki.make_ca(
        "CN=Lab Old TLS CA, O=Lab Trust Services, C=US",
        public_root,
        key_kind="ec",
        not_before="2020-01-01",
        not_after="2025-01-01",
        now=NOW,
    )
    verdict = judge(make(issuer=old_ca), intermediates=[old_ca.cert])
    assert verdict.codes == (_trust.CHAIN_INVALID,)
    assert "not valid at validation time" in verdict.reasons[0].text


# ---------------------------------------------------------------------------------------------
# Reasons combined
# ---------------------------------------------------------------------------------------------


def test_every_reason_at_once(judge):
    issued = pki.make_leaf(
        "CN=EX01",
        None,
        sans=["EX01"],
        key_size=1024,
        hash="sha1",
        eku=("clientAuth",),
        not_before="2019-01-01",
        not_after="2024-01-01",
        now=NOW,
    )
    verdict = judge(issued, names=(FQDN,), HasPrivateKey=False)
    assert verdict.codes == (
        _trust.SELF_SIGNED,
        _trust.UNKNOWN_ROOT,
        _trust.EXPIRED,
        _trust.NAME_MISMATCH,
        _trust.NO_PRIVATE_KEY,
        _trust.WEAK_KEY,
        _trust.WEAK_SIGNATURE,
        _trust.NOT_SERVER_AUTH,
    )
    assert not verdict.trusted


DEFECTS = st.fixed_dictionaries(
    {
        "chain": st.sampled_from(["full", "incomplete", "enterprise", "self_signed"]),
        "dates": st.sampled_from(["valid", "expired", "future"]),
        "weak_key": st.booleans(),
        "sha1": st.booleans(),
        "client_auth_only": st.booleans(),
        "no_private_key": st.booleans(),
        "wrong_name": st.booleans(),
    }
)


@settings(max_examples=60, deadline=None)
@given(defects=DEFECTS)
def test_reasons_are_exactly_the_defects(defects, judge, public_ca, enterprise_ca, enterprise_root):
    issuer = {"full": public_ca, "incomplete": public_ca, "enterprise": enterprise_ca, "self_signed": None}[defects["chain"]]
    validity = {
        "valid": (NOW - datetime.timedelta(days=30), NOW + datetime.timedelta(days=300)),
        "expired": (NOW - datetime.timedelta(days=400), NOW - datetime.timedelta(days=1)),
        "future": (NOW + datetime.timedelta(days=1), NOW + datetime.timedelta(days=400)),
    }[defects["dates"]]
    leaf = pki.make_leaf(
        SUBJECT,
        issuer,
        sans=[FQDN],
        not_before=validity[0],
        not_after=validity[1],
        key_size=1024 if defects["weak_key"] else 2048,
        hash="sha1" if defects["sha1"] else "sha256",
        eku=("clientAuth",) if defects["client_auth_only"] else ("serverAuth",),
        now=NOW,
    )
    held = {"full": [public_ca.cert], "incomplete": [], "enterprise": [enterprise_ca.cert, enterprise_root.cert], "self_signed": []}
    verdict = judge(
        leaf,
        intermediates=held[defects["chain"]],
        known=[public_ca.cert],
        names=("smtp.fabrikam.com",) if defects["wrong_name"] else (FQDN,),
        HasPrivateKey=not defects["no_private_key"],
    )
    expected = {
        "full": set(),
        "incomplete": {_trust.INCOMPLETE_CHAIN},
        "enterprise": {_trust.UNKNOWN_ROOT},
        "self_signed": {_trust.SELF_SIGNED, _trust.UNKNOWN_ROOT},
    }[defects["chain"]]
    expected |= {"valid": set(), "expired": {_trust.EXPIRED}, "future": {_trust.NOT_YET_VALID}}[defects["dates"]]
    for defect, code in (
        ("weak_key", _trust.WEAK_KEY),
        ("sha1", _trust.WEAK_SIGNATURE),
        ("client_auth_only", _trust.NOT_SERVER_AUTH),
        ("no_private_key", _trust.NO_PRIVATE_KEY),
        ("wrong_name", _trust.NAME_MISMATCH),
    ):
        if defects[defect]:
            expected.add(code)
    assert set(verdict.codes) == expected
    assert list(verdict.codes) == sorted(verdict.codes, key=_trust.REASON_CODES.index)
    assert verdict.trusted is (not expected)


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [(), (None,), ("",)])
def test_names_are_required(make, judge, names):
    with pytest.raises(ValueError, match="names"):
        judge(make(), names=names)


def test_now_must_be_aware(make, judge):
    with pytest.raises(ValueError, match="timezone-aware"):
        judge(make(), now=NOW.replace(tzinfo=None))


def test_a_shared_pool_gives_the_same_verdicts(make, judge, public_ca):
    pool = _trust.CertificatePool.of([public_ca.cert, public_ca.cert])
    assert pool.certificates == (public_ca.cert,)
    leaf = make()
    assert judge(leaf, intermediates=pool) == judge(leaf, intermediates=[public_ca.cert])


# ---------------------------------------------------------------------------------------------
# Trust bundles
# ---------------------------------------------------------------------------------------------


def write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_default_bundle_is_mozillas_via_certifi():
    bundle = _trust.load_trust_bundle()
    assert len(bundle.anchors.certificates) > 100
    assert bundle is _trust.load_trust_bundle()  # loaded once


def test_bundle_from_a_pem_file_is_cached_until_it_changes(tmp_path, public_root, enterprise_root):
    path = write(tmp_path / "roots.pem", public_root.pem)
    first = _trust.load_trust_bundle(path)
    assert first.anchors.certificates == (public_root.cert,) and first.source == os.path.realpath(path)
    assert _trust.load_trust_bundle(path) is first
    write(tmp_path / "roots.pem", public_root.pem + enterprise_root.pem)
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse file-system clocks
    assert len(_trust.load_trust_bundle(path).anchors.certificates) == 2


def test_missing_certifi_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "certifi", None)
    with pytest.raises(_trust.TrustBundleError, match="pip install certifi"):
        _trust.load_trust_bundle()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "holds no PEM certificate"),
        (b"\x00\x01 binary garbage", "holds no PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "holds no readable certificate"),
    ],
)
def test_unusable_bundles(tmp_path, content, message):
    with pytest.raises(_trust.TrustBundleError, match=message):
        _trust.load_trust_bundle(write(tmp_path / "bundle.pem", content))


@pytest.mark.parametrize("name", ["missing.pem", "."])
def test_unreadable_bundle(tmp_path, name):
    with pytest.raises(_trust.TrustBundleError, match="cannot read trust bundle"):
        _trust.load_trust_bundle(str(tmp_path / name))


def test_one_unreadable_block_is_skipped_and_listed(public_root):
    garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    bundle = _trust.trust_store_from_pem(garbage + public_root.pem, "mixed.pem")
    assert bundle.anchors.certificates == (public_root.cert,)
    assert len(bundle.skipped) == 1 and bundle.skipped[0].startswith("certificate 1:")


def test_a_readable_bundle_splits_roots_from_intermediates(public_root, public_ca, enterprise_root):
    bundle = _trust.trust_store_from_pem(public_root.pem + public_ca.pem + enterprise_root.pem, "ok.pem")
    assert bundle.anchors.certificates == (public_root.cert, enterprise_root.cert)
    assert bundle.intermediates.certificates == (public_ca.cert,) and bundle.skipped == ()


@pytest.mark.parametrize("given", [None, ""])
def test_no_bundle_or_an_empty_option_is_certifi(given):
    import certifi
    store = _args.trust_store({"trust_bundle": given, "min_key_size": 2048})
    assert os.path.samefile(store.source, certifi.where()) and len(store.anchors.certificates) > 50


def test_the_default_bundle_is_read_on_import_so_that_forked_workers_inherit_it():
    import subprocess
    probe = ("from ansible_collections.hybridmail.exchange.plugins.plugin_utils import _trust\n"
             "read_on_import = _trust._load_cached.cache_info().currsize\n"
             "_trust.load_trust_bundle(None)\n"
             "print(read_on_import, _trust._load_cached.cache_info().hits)\n")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                               env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    # Read once on import; the first task's read is then a cache hit.
    assert completed.stdout.split() == ["1", "1"], completed.stdout + completed.stderr

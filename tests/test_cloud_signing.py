from __future__ import annotations

from cloud_api.auth.signing import sign_body, verify_signature

# RFC 4231, test case 2.
RFC_KEY = "Jefe"
RFC_DATA = b"what do ya want for nothing?"
RFC_MAC = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_sign_body_is_hmac_sha256_in_hex_with_its_scheme() -> None:
    assert sign_body(RFC_KEY, RFC_DATA) == f"sha256={RFC_MAC}"


def test_verify_accepts_the_signature_of_the_exact_body() -> None:
    signature = sign_body("s3cret", b'{"cart_id": "c1"}')
    assert verify_signature("s3cret", b'{"cart_id": "c1"}', signature)
    assert verify_signature("s3cret", b'{"cart_id": "c1"}', signature.upper())
    assert verify_signature("s3cret", b'{"cart_id": "c1"}', f"  {signature}\t")


def test_verify_refuses_any_other_body_secret_or_form() -> None:
    body = b'{"cart_id": "c1"}'
    signature = sign_body("s3cret", body)
    assert not verify_signature("s3cret", body + b" ", signature)
    assert not verify_signature("other", body, signature)
    assert not verify_signature("s3cret", body, signature.removeprefix("sha256="))
    assert not verify_signature("s3cret", body, "sha1=" + signature.removeprefix("sha256="))
    assert not verify_signature("s3cret", body, "")
    assert not verify_signature("s3cret", body, "sha256=é" + "0" * 63)

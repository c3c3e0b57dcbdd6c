"""Signing/verification round trips and the credential-handling rules."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from kalshi_rl.errors import AuthError
from kalshi_rl.kalshi import auth

PEM = auth.generate_private_key_pem()


@pytest.fixture(scope="module")
def creds() -> auth.Credentials:
    return auth.Credentials.from_pem("key-123", PEM)


def test_signature_verifies_and_binds_every_part(creds: auth.Credentials) -> None:
    h = creds.headers("get", "/trade-api/ws/v2", ts_ms=1_700_000_000_123)
    assert h[auth.HDR_KEY] == "key-123"
    assert h[auth.HDR_TIMESTAMP] == "1700000000123"
    pub = creds.public_pem()
    sig = h[auth.HDR_SIGNATURE]
    assert auth.verify(pub, "1700000000123", "GET", "/trade-api/ws/v2", sig)
    # the query string is not part of the signed path (Kalshi rule)
    assert auth.verify(pub, 1700000000123, "GET", "/trade-api/ws/v2?x=1", sig)
    assert not auth.verify(pub, "1700000000124", "GET", "/trade-api/ws/v2", sig)
    assert not auth.verify(pub, "1700000000123", "POST", "/trade-api/ws/v2", sig)
    assert not auth.verify(pub, "1700000000123", "GET", "/trade-api/v2/markets", sig)
    assert not auth.verify(pub, "1700000000123", "GET", "/trade-api/ws/v2", "not base64!")
    other = auth.Credentials.from_pem("k", auth.generate_private_key_pem()).public_pem()
    assert not auth.verify(other, "1700000000123", "GET", "/trade-api/ws/v2", sig)


def test_signature_is_pss_sha256_salt_32(creds: auth.Credentials) -> None:
    # verify with an independently built PSS config: salt length 32 exactly, MGF1-SHA256
    sig = base64.b64decode(auth.sign(creds.private_key, 5, "GET", "/p?q"))
    creds.private_key.public_key().verify(
        sig,
        b"5GET/p",
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def test_repr_never_shows_key(creds: auth.Credentials) -> None:
    body = PEM.decode().splitlines()[1]
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "redacted" in text
        assert body not in text
        assert "RSAPrivateKey" not in text


def test_from_env_pem_and_path(tmp_path: Path) -> None:
    c = auth.Credentials.from_env({"KALSHI_API_KEY_ID": "a", "KALSHI_PRIVATE_KEY": PEM.decode()})
    assert c.key_id == "a"
    p = tmp_path / "k.pem"
    p.write_bytes(PEM)
    os.chmod(p, 0o600)
    c2 = auth.Credentials.from_env({"KALSHI_API_KEY_ID": "b", "KALSHI_PRIVATE_KEY_PATH": str(p)})
    assert c2.public_pem() == auth.Credentials.from_pem("x", PEM).public_pem()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_world_or_group_readable_key_file_refused(tmp_path: Path, mode: int) -> None:
    p = tmp_path / "k.pem"
    p.write_bytes(PEM)
    os.chmod(p, mode)
    with pytest.raises(AuthError, match="chmod 600"):
        auth.Credentials.from_env({"KALSHI_API_KEY_ID": "b", "KALSHI_PRIVATE_KEY_PATH": str(p)})


def test_missing_or_bad_credentials(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="KALSHI_API_KEY_ID"):
        auth.Credentials.from_env({})
    with pytest.raises(AuthError, match="KALSHI_PRIVATE_KEY"):
        auth.Credentials.from_env({"KALSHI_API_KEY_ID": "a"})
    with pytest.raises(AuthError, match="cannot stat"):
        auth.Credentials.from_env(
            {"KALSHI_API_KEY_ID": "a", "KALSHI_PRIVATE_KEY_PATH": str(tmp_path / "nope")}
        )
    with pytest.raises(AuthError, match="could not parse") as ei:
        auth.Credentials.from_pem(
            "a", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        )
    assert "AAAA" not in str(ei.value)

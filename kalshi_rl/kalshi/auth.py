"""Kalshi request signing: RSA-PSS over ``timestamp_ms + METHOD + path``.

Kalshi authenticates the WebSocket handshake and every REST call with three headers:
``KALSHI-ACCESS-KEY`` (key id), ``KALSHI-ACCESS-TIMESTAMP`` (unix ms) and
``KALSHI-ACCESS-SIGNATURE`` = base64(RSA-PSS(SHA-256, MGF1-SHA256, salt 32) over the UTF-8
string ``f"{ts_ms}{METHOD}{path}"``), where ``path`` is taken from the host root and carries
no query string.  ``verify`` is the inverse, used by the local exchange (kalshi_rl.sim).

The private key never appears in a repr, str or log line: ``Credentials`` redacts it.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kalshi_rl.errors import AuthError

HDR_KEY = "KALSHI-ACCESS-KEY"
HDR_TIMESTAMP = "KALSHI-ACCESS-TIMESTAMP"
HDR_SIGNATURE = "KALSHI-ACCESS-SIGNATURE"

ENV_KEY_ID = "KALSHI_API_KEY_ID"
ENV_PRIVATE_KEY = "KALSHI_PRIVATE_KEY"  # PEM text
ENV_PRIVATE_KEY_PATH = "KALSHI_PRIVATE_KEY_PATH"

_SALT_LEN = 32  # == SHA-256 digest length, as Kalshi specifies


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_SALT_LEN)


def signing_message(ts_ms: int | str, method: str, path: str) -> bytes:
    """The exact bytes Kalshi signs.

    Args:
        ts_ms: unix milliseconds (int or its decimal string).
        method: HTTP method; upper-cased here.
        path: path from the host root; any ``?query`` is dropped.

    Returns:
        ``f"{ts_ms}{METHOD}{path}"`` as UTF-8.
    """
    return f"{ts_ms}{method.upper()}{path.split('?', 1)[0]}".encode()


def sign(private_key: rsa.RSAPrivateKey, ts_ms: int | str, method: str, path: str) -> str:
    """Base64 RSA-PSS signature of ``signing_message(ts_ms, method, path)``."""
    sig = private_key.sign(signing_message(ts_ms, method, path), _pss(), hashes.SHA256())
    return base64.b64encode(sig).decode("ascii")


def load_public_key(pem: bytes | str) -> rsa.RSAPublicKey:
    """Parse a PEM public key; raise AuthError if it is not an RSA public key."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AuthError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise AuthError(f"public key is {type(key).__name__}, Kalshi uses RSA")
    return key


def verify(
    public_key: rsa.RSAPublicKey | bytes | str,
    ts: int | str,
    method: str,
    path: str,
    signature: str | bytes,
) -> bool:
    """Check a Kalshi signature (the server side of ``sign``).

    Args:
        public_key: an RSA public key object or its PEM text.
        ts: the KALSHI-ACCESS-TIMESTAMP header value.
        method: HTTP method of the request.
        path: request path (a query string is ignored, as Kalshi does).
        signature: the KALSHI-ACCESS-SIGNATURE header value (base64).

    Returns:
        True when the signature is valid; False for a bad signature or malformed base64.
        Freshness of ``ts`` is the caller's policy.
    """
    key = public_key if isinstance(public_key, rsa.RSAPublicKey) else load_public_key(public_key)
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, signing_message(ts, method, path), _pss(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def load_private_key(pem: bytes | str) -> rsa.RSAPrivateKey:
    """Parse an unencrypted PEM RSA private key; AuthError (without key material) if not."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # the exception text never contains the key bytes, only the parse failure
        raise AuthError(f"could not parse the Kalshi private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AuthError(f"private key is {type(key).__name__}, Kalshi uses RSA")
    return key


def read_key_file(path: Path) -> bytes:
    """Read a private key file, refusing one that group or others may read.

    Raises:
        AuthError: missing/unreadable file or permissions wider than 0600.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise AuthError(f"cannot stat private key file {path}: {exc}") from exc
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise AuthError(
            f"private key file {path} has mode {mode:04o}; it must not be readable by group or "
            f"others (run: chmod 600 {path})"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AuthError(f"cannot read private key file {path}: {exc}") from exc


@dataclass(frozen=True, repr=False)
class Credentials:
    """A Kalshi API key id and its RSA private key. repr/str never show the key."""

    key_id: str
    private_key: rsa.RSAPrivateKey = field(compare=False)

    def __repr__(self) -> str:
        return f"Credentials(key_id={self.key_id!r}, private_key=<redacted>)"

    __str__ = __repr__

    @classmethod
    def from_pem(cls, key_id: str, pem: bytes | str) -> Credentials:
        """Credentials from a key id and PEM text."""
        if not key_id:
            raise AuthError("Kalshi API key id is empty")
        return cls(key_id=key_id, private_key=load_private_key(pem))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Credentials:
        """Read KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY (PEM) or KALSHI_PRIVATE_KEY_PATH.

        Raises:
            AuthError: a variable is missing, the key file is unsafe or the key is invalid.
        """
        e = os.environ if env is None else env
        key_id = e.get(ENV_KEY_ID, "")
        if not key_id:
            raise AuthError(f"{ENV_KEY_ID} is not set")
        pem = e.get(ENV_PRIVATE_KEY)
        if pem:
            return cls.from_pem(key_id, pem)
        path = e.get(ENV_PRIVATE_KEY_PATH)
        if not path:
            raise AuthError(f"set {ENV_PRIVATE_KEY} (PEM) or {ENV_PRIVATE_KEY_PATH}")
        return cls.from_pem(key_id, read_key_file(Path(path).expanduser()))

    def headers(self, method: str, path: str, ts_ms: int | None = None) -> dict[str, str]:
        """The three signed headers for one request (a fresh timestamp unless given).

        Args:
            method: HTTP method (``GET`` for the WebSocket handshake).
            path: path from the host root, e.g. ``/trade-api/ws/v2``.
            ts_ms: override the timestamp (tests); defaults to now.
        """
        ts = int(time.time() * 1000) if ts_ms is None else ts_ms
        return {
            HDR_KEY: self.key_id,
            HDR_TIMESTAMP: str(ts),
            HDR_SIGNATURE: sign(self.private_key, ts, method, path),
        }

    def public_pem(self) -> bytes:
        """PEM of the matching public key (to configure a local exchange)."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def generate_private_key_pem(bits: int = 2048) -> bytes:
    """A fresh unencrypted PEM RSA key (for the local exchange, tests and demos)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

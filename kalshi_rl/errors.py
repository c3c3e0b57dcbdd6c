"""The flat exception hierarchy of kalshi-rl (one line each)."""

from __future__ import annotations


class KalshiRLError(Exception):
    """Base of every error raised by kalshi-rl."""


class ConfigError(KalshiRLError):
    """A setting is missing, malformed or unsafe."""


class AuthError(KalshiRLError):
    """Kalshi credentials are missing, unreadable or rejected."""


class ProtocolError(KalshiRLError):
    """A Kalshi message could not be decoded or violates the protocol."""


class ServerError(KalshiRLError):
    """The exchange answered a command with an error message (code, msg)."""


class StoreError(KalshiRLError):
    """PostgreSQL storage failed (connection, migration, COPY)."""


class MigrationError(StoreError):
    """A schema migration is missing, out of order or failed."""


class DatasetError(KalshiRLError):
    """A training dataset is empty, inconsistent or of an unknown version."""


class RegistryError(KalshiRLError):
    """A model version is unknown or a registry transition is not allowed."""


class EnvError(KalshiRLError):
    """An environment was configured or used in a way it does not support."""


class KalshiApiError(KalshiRLError):
    """Kalshi (or an exchange speaking its API) refused a request: HTTP status, code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

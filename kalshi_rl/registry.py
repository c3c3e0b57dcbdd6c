"""Model registry: the ``models`` table plus a checkpoint directory.

A model *name* has numbered *versions* (1, 2, ...).  Each version row records what it was
trained from (algorithm, markets, parent version, hyperparameters, env/observation config
and its hash, data window, metrics, git commit) and where its checkpoint lies.

Status machine (anything else raises :class:`~kalshi_rl.errors.RegistryError`)::

    training -> ready | failed
    ready    -> deployed | archived
    deployed -> ready | archived
    archived -> ready
    failed   -> archived

At most one version of a name is ``deployed``; deploying demotes the previous one to
``ready`` in the same transaction.  Every status change sends
``NOTIFY kalshi_rl_models, '<json>'`` (see :func:`notify_payload`) so a live actor can
hot-reload without polling.

Checkpoints live under ``<root>/<name>/v<version>/`` as ``model.zip`` (the SB3 zip, with
our metadata added as the extra entry :data:`ZIP_METADATA_ENTRY`) and ``metadata.json``.
SB3's loader reads only ``data``, ``*.pth`` and its version/system-info entries, so the
extra entry does not disturb ``PPO.load``.
"""

from __future__ import annotations

import hashlib
import platform
import re
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import orjson

from kalshi_rl.errors import RegistryError

NOTIFY_CHANNEL = "kalshi_rl_models"
ZIP_METADATA_ENTRY = "kalshi_rl_metadata.json"
METADATA_FILE = "metadata.json"
MODEL_FILE = "model.zip"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_PACKAGES = ("numpy", "numba", "torch", "stable-baselines3", "gymnasium", "kalshi-rl")


class ModelStatus(StrEnum):
    """Lifecycle of a model version (the CHECK constraint of ``models.status``)."""

    TRAINING = "training"
    READY = "ready"
    DEPLOYED = "deployed"
    ARCHIVED = "archived"
    FAILED = "failed"


TRANSITIONS: dict[ModelStatus, frozenset[ModelStatus]] = {
    ModelStatus.TRAINING: frozenset({ModelStatus.READY, ModelStatus.FAILED}),
    ModelStatus.READY: frozenset({ModelStatus.DEPLOYED, ModelStatus.ARCHIVED}),
    ModelStatus.DEPLOYED: frozenset({ModelStatus.READY, ModelStatus.ARCHIVED}),
    ModelStatus.ARCHIVED: frozenset({ModelStatus.READY}),
    ModelStatus.FAILED: frozenset({ModelStatus.ARCHIVED}),
}


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One row of ``models``."""

    id: int
    name: str
    version: int
    algorithm: str
    markets: tuple[str, ...]
    parent_id: int | None
    checkpoint_path: str | None
    hyperparams: dict[str, Any]
    env_config: dict[str, Any]
    config_hash: str
    data_window: dict[str, Any]
    metrics: dict[str, Any]
    status: ModelStatus
    git_commit: str | None
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        """JSON-able dict (timestamps as ISO strings)."""
        out: dict[str, Any] = orjson.loads(orjson.dumps(self))
        out["markets"] = list(self.markets)
        return out


_COLUMNS = (
    "id, name, version, algorithm, markets, parent_id, checkpoint_path, hyperparams,"
    " env_config, config_hash, data_window, metrics, status, git_commit, created_at, updated_at"
)


def _json_col(v: Any) -> dict[str, Any]:
    # Connections made with kalshi_rl.store.db.connect decode jsonb; plain asyncpg gives str.
    if isinstance(v, str):
        decoded: dict[str, Any] = orjson.loads(v)
        return decoded
    return dict(v)


def _row(r: asyncpg.Record) -> ModelVersion:
    return ModelVersion(
        id=r["id"],
        name=r["name"],
        version=r["version"],
        algorithm=r["algorithm"],
        markets=tuple(r["markets"]),
        parent_id=r["parent_id"],
        checkpoint_path=r["checkpoint_path"],
        hyperparams=_json_col(r["hyperparams"]),
        env_config=_json_col(r["env_config"]),
        config_hash=r["config_hash"],
        data_window=_json_col(r["data_window"]),
        metrics=_json_col(r["metrics"]),
        status=ModelStatus(r["status"]),
        git_commit=r["git_commit"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, compact, numpy/dataclasses serialised.

    Args:
        obj: any JSON-able value (dicts, lists, tuples, dataclasses, numpy scalars/arrays).

    Returns:
        UTF-8 bytes; equal values give equal bytes regardless of dict insertion order.
    """
    try:
        return orjson.dumps(
            obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        )
    except TypeError as exc:
        raise RegistryError(f"config is not JSON-serialisable: {exc}") from exc


def config_hash(obj: Any) -> str:
    """Stable identity of a configuration: sha256 hex of its canonical JSON.

    Args:
        obj: the config (dict, dataclass, NamedTuple...).

    Returns:
        64 lowercase hex characters.
    """
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def _jsonb(obj: Any) -> str:
    # Sent as text cast ::text::jsonb, so the jsonb codec (if any) never re-encodes it.
    return canonical_json(obj if obj is not None else {}).decode()


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise RegistryError(
            f"model name {name!r} must be 1-128 chars of letters, digits, '_', '.', '-'"
        )


async def register(
    conn: asyncpg.Connection,
    name: str,
    algorithm: str,
    *,
    env_config: Mapping[str, Any],
    hyperparams: Mapping[str, Any] | None = None,
    markets: Sequence[str] = (),
    parent_id: int | None = None,
    checkpoint_path: str | Path | None = None,
    data_window: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    git_commit: str | None = None,
    config_digest: str | None = None,
) -> ModelVersion:
    """Register the next version of ``name`` with status ``training``.

    Args:
        conn: a connection (a transaction is opened on it).
        name: model name; versions count up per name from 1.
        algorithm: e.g. ``"PPO"``.
        env_config: env/observation config; its :func:`config_hash` is stored.
        hyperparams, markets, parent_id, checkpoint_path, data_window, metrics, git_commit:
            provenance columns.
        config_digest: override the stored hash (default ``config_hash(env_config)``).

    Returns:
        The new :class:`ModelVersion`.
    """
    _check_name(name)
    if not algorithm:
        raise RegistryError("algorithm must be non-empty")
    digest = config_digest or config_hash(env_config)
    async with conn.transaction():
        # Serialise version allocation per name (two trainers finishing together).
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('kalshi_rl_models:' || $1))", name
        )
        if parent_id is not None:
            exists = await conn.fetchval("SELECT 1 FROM models WHERE id = $1", parent_id)
            if not exists:
                raise RegistryError(f"parent model id {parent_id} does not exist")
        row = await conn.fetchrow(
            "INSERT INTO models (name, version, algorithm, markets, parent_id, checkpoint_path,"
            " hyperparams, env_config, config_hash, data_window, metrics, git_commit)"
            " SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6::text::jsonb,"
            " $7::text::jsonb, $8, $9::text::jsonb, $10::text::jsonb, $11"
            " FROM models WHERE name = $1"
            f" RETURNING {_COLUMNS}",
            name,
            algorithm,
            list(markets),
            parent_id,
            None if checkpoint_path is None else str(checkpoint_path),
            _jsonb(hyperparams),
            _jsonb(env_config),
            digest,
            _jsonb(data_window),
            _jsonb(metrics),
            git_commit,
        )
    return _row(row)


async def get(conn: asyncpg.Connection, model_id: int) -> ModelVersion:
    """The version with ``models.id == model_id`` (RegistryError if unknown)."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM models WHERE id = $1", model_id)
    if row is None:
        raise RegistryError(f"no model with id {model_id}")
    return _row(row)


async def get_version(conn: asyncpg.Connection, name: str, version: int) -> ModelVersion:
    """Version ``version`` of ``name`` (RegistryError if unknown)."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM models WHERE name = $1 AND version = $2", name, version
    )
    if row is None:
        raise RegistryError(f"no model {name!r} version {version}")
    return _row(row)


async def resolve(conn: asyncpg.Connection, ref: str) -> ModelVersion:
    """A version from a CLI reference: ``"17"`` (id), ``"name:3"`` or ``"name"`` (latest)."""
    if ref.isdigit():
        return await get(conn, int(ref))
    name, sep, ver = ref.rpartition(":")
    if sep and ver.isdigit():
        return await get_version(conn, name, int(ver))
    found = await latest(conn, ref)
    if found is None:
        raise RegistryError(f"no model named {ref!r}")
    return found


async def list_models(
    conn: asyncpg.Connection, name: str | None = None, status: ModelStatus | None = None
) -> list[ModelVersion]:
    """All versions (optionally of one name / in one status), by name then version."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM models WHERE ($1::text IS NULL OR name = $1)"
        " AND ($2::text IS NULL OR status = $2) ORDER BY name, version",
        name,
        None if status is None else str(status),
    )
    return [_row(r) for r in rows]


async def latest(
    conn: asyncpg.Connection, name: str, status: ModelStatus | None = None
) -> ModelVersion | None:
    """Highest version of ``name`` (optionally in ``status``), or None."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM models WHERE name = $1 AND ($2::text IS NULL OR status = $2)"
        " ORDER BY version DESC LIMIT 1",
        name,
        None if status is None else str(status),
    )
    return None if row is None else _row(row)


async def deployed(conn: asyncpg.Connection, name: str) -> ModelVersion | None:
    """The deployed version of ``name``, or None."""
    return await latest(conn, name, ModelStatus.DEPLOYED)


def notify_payload(mv: ModelVersion, previous: ModelStatus, demoted_id: int | None) -> str:
    """The JSON sent on :data:`NOTIFY_CHANNEL` after a status change.

    Keys: ``event`` ("status"), ``id``, ``name``, ``version``, ``status``, ``previous_status``,
    ``checkpoint_path``, ``config_hash``, ``demoted_id`` (the version a deploy demoted, or null).
    """
    return orjson.dumps(
        {
            "event": "status",
            "id": mv.id,
            "name": mv.name,
            "version": mv.version,
            "status": str(mv.status),
            "previous_status": str(previous),
            "checkpoint_path": mv.checkpoint_path,
            "config_hash": mv.config_hash,
            "demoted_id": demoted_id,
        }
    ).decode()


async def set_status(
    conn: asyncpg.Connection, model_id: int, status: ModelStatus | str
) -> ModelVersion:
    """Move a version to ``status`` if the transition is allowed; NOTIFY listeners.

    Deploying demotes the name's currently deployed version to ``ready`` first (same
    transaction, so readers never see two deployed versions or none in between).

    Args:
        conn: a connection (a transaction is opened on it).
        model_id: ``models.id``.
        status: the target status.

    Returns:
        The updated version.
    """
    try:
        target = ModelStatus(status)
    except ValueError as exc:
        raise RegistryError(
            f"unknown status {status!r}; one of {', '.join(s.value for s in ModelStatus)}"
        ) from exc
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM models WHERE id = $1 FOR UPDATE", model_id
        )
        if row is None:
            raise RegistryError(f"no model with id {model_id}")
        current = _row(row)
        if target not in TRANSITIONS[current.status]:
            allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current.status]))
            raise RegistryError(
                f"{current.name} v{current.version} (id {model_id}) cannot go from "
                f"{current.status.value} to {target.value}; allowed: {allowed}"
            )
        demoted_id: int | None = None
        if target is ModelStatus.DEPLOYED:
            demoted_id = await conn.fetchval(
                "UPDATE models SET status = 'ready', updated_at = now()"
                " WHERE name = $1 AND status = 'deployed' RETURNING id",
                current.name,
            )
        new = _row(
            await conn.fetchrow(
                f"UPDATE models SET status = $2, updated_at = now() WHERE id = $1"
                f" RETURNING {_COLUMNS}",
                model_id,
                target.value,
            )
        )
        # NOTIFY inside the transaction is delivered at commit, never for a rollback.
        await conn.execute(
            "SELECT pg_notify($1, $2)",
            NOTIFY_CHANNEL,
            notify_payload(new, current.status, demoted_id),
        )
    return new


async def promote(conn: asyncpg.Connection, model_id: int) -> ModelVersion:
    """Mark a version ``ready`` (training finished, or un-deploy / restore)."""
    return await set_status(conn, model_id, ModelStatus.READY)


async def deploy(conn: asyncpg.Connection, model_id: int) -> ModelVersion:
    """Deploy a ``ready`` version, demoting the previously deployed one of its name."""
    return await set_status(conn, model_id, ModelStatus.DEPLOYED)


async def archive(conn: asyncpg.Connection, model_id: int) -> ModelVersion:
    """Archive a version (from ready, deployed or failed)."""
    return await set_status(conn, model_id, ModelStatus.ARCHIVED)


async def mark_failed(conn: asyncpg.Connection, model_id: int) -> ModelVersion:
    """Mark a version whose training failed."""
    return await set_status(conn, model_id, ModelStatus.FAILED)


async def update(
    conn: asyncpg.Connection,
    model_id: int,
    *,
    metrics: Mapping[str, Any] | None = None,
    checkpoint_path: str | Path | None = None,
) -> ModelVersion:
    """Merge ``metrics`` into the stored ones and/or set the checkpoint path."""
    row = await conn.fetchrow(
        "UPDATE models SET metrics = metrics || coalesce($2::text::jsonb, '{}'::jsonb),"
        " checkpoint_path = coalesce($3, checkpoint_path), updated_at = now()"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        model_id,
        None if metrics is None else _jsonb(metrics),
        None if checkpoint_path is None else str(checkpoint_path),
    )
    if row is None:
        raise RegistryError(f"no model with id {model_id}")
    return _row(row)


async def ancestors(conn: asyncpg.Connection, model_id: int) -> list[ModelVersion]:
    """Parent, grandparent, ... of a version (nearest first; excludes the version itself)."""
    await get(conn, model_id)
    rows = await conn.fetch(
        "WITH RECURSIVE up(id, parent_id, depth) AS ("
        "  SELECT id, parent_id, 0 FROM models WHERE id = $1"
        "  UNION ALL SELECT m.id, m.parent_id, up.depth + 1 FROM models m"
        "  JOIN up ON m.id = up.parent_id WHERE up.depth < 10000)"
        f" SELECT {', '.join('m.' + c.strip() for c in _COLUMNS.split(','))}"
        " FROM up JOIN models m USING (id) WHERE up.depth > 0 ORDER BY up.depth",
        model_id,
    )
    return [_row(r) for r in rows]


async def descendants(conn: asyncpg.Connection, model_id: int) -> list[ModelVersion]:
    """Every version derived from this one, breadth-first (excludes the version itself)."""
    await get(conn, model_id)
    rows = await conn.fetch(
        "WITH RECURSIVE down(id, depth) AS ("
        "  SELECT id, 0 FROM models WHERE id = $1"
        "  UNION ALL SELECT m.id, down.depth + 1 FROM models m"
        "  JOIN down ON m.parent_id = down.id WHERE down.depth < 10000)"
        f" SELECT {', '.join('m.' + c.strip() for c in _COLUMNS.split(','))}"
        " FROM down JOIN models m USING (id) WHERE down.depth > 0 ORDER BY down.depth, m.id",
        model_id,
    )
    return [_row(r) for r in rows]


# --------------------------------------------------------------------------- checkpoints


class SavableModel(Protocol):
    """What we need of an SB3 model: ``save(path)`` writing its zip."""

    def save(self, path: Any) -> None: ...


def git_commit(cwd: Path | None = None) -> str | None:
    """HEAD commit of the repository at ``cwd`` (or this package's), None if not in git."""
    where = cwd or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    """Versions of python and the packages a checkpoint depends on (None if missing)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def checkpoint_metadata(
    config: Any,
    *,
    name: str,
    version: int,
    algorithm: str,
    data_window: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    commit: str | None = None,
) -> dict[str, Any]:
    """The metadata dict stored beside and inside a checkpoint.

    Returns:
        ``{"name", "version", "algorithm", "config", "config_hash", "git_commit",
        "packages", "data_window", "metrics"}`` (JSON-able).
    """
    return {
        "name": name,
        "version": version,
        "algorithm": algorithm,
        "config": orjson.loads(canonical_json(config)),
        "config_hash": config_hash(config),
        "git_commit": commit if commit is not None else git_commit(),
        "packages": package_versions(),
        "data_window": dict(data_window or {}),
        "metrics": dict(metrics or {}),
    }


def embed_metadata(zip_path: Path, meta: Mapping[str, Any]) -> None:
    """Add (or replace) :data:`ZIP_METADATA_ENTRY` inside an SB3 zip."""
    data = orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    with zipfile.ZipFile(zip_path, "r") as zf:
        names = zf.namelist()
    if ZIP_METADATA_ENTRY not in names:
        with zipfile.ZipFile(zip_path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(ZIP_METADATA_ENTRY, data)
        return
    # zipfile cannot replace an entry in place: rewrite the archive without the old one.
    tmp = zip_path.with_suffix(".tmp.zip")
    with zipfile.ZipFile(zip_path, "r") as src, zipfile.ZipFile(tmp, "w") as dst:
        for info in src.infolist():
            if info.filename != ZIP_METADATA_ENTRY:
                dst.writestr(info, src.read(info.filename))
        dst.writestr(ZIP_METADATA_ENTRY, data, compress_type=zipfile.ZIP_DEFLATED)
    tmp.replace(zip_path)


def read_embedded_metadata(zip_path: Path) -> dict[str, Any]:
    """The metadata stored inside a checkpoint zip (RegistryError if absent)."""
    try:
        with zipfile.ZipFile(zip_path, "r") as zf:
            raw = zf.read(ZIP_METADATA_ENTRY)
    except KeyError as exc:
        raise RegistryError(f"{zip_path} has no {ZIP_METADATA_ENTRY} entry") from exc
    except (OSError, zipfile.BadZipFile) as exc:
        raise RegistryError(f"cannot read checkpoint {zip_path}: {exc}") from exc
    meta: dict[str, Any] = orjson.loads(raw)
    return meta


class CheckpointStore:
    """``<root>/<name>/v<version>/{model.zip, metadata.json}``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def default(cls) -> CheckpointStore:
        """The store under the data directory: ``<KALSHI_RL_DATA_DIR or user data>/models``."""
        from kalshi_rl.store.db import default_data_dir

        return cls(default_data_dir() / "models")

    def version_dir(self, name: str, version: int) -> Path:
        """Directory of one version (not created)."""
        _check_name(name)
        return self.root / name / f"v{version}"

    def model_path(self, name: str, version: int) -> Path:
        """Path of the SB3 zip of a version."""
        return self.version_dir(name, version) / MODEL_FILE

    def save(self, model: SavableModel, meta: Mapping[str, Any]) -> Path:
        """Save an SB3 model and its metadata (``meta["name"]``/``["version"]`` pick the dir).

        Args:
            model: anything with SB3's ``save(path)``.
            meta: from :func:`checkpoint_metadata`.

        Returns:
            Path of ``model.zip`` (metadata also inside it and in ``metadata.json``).
        """
        d = self.version_dir(str(meta["name"]), int(meta["version"]))
        d.mkdir(parents=True, exist_ok=True)
        path = d / MODEL_FILE
        model.save(path)
        embed_metadata(path, meta)
        (d / METADATA_FILE).write_bytes(
            orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        )
        return path

    def read_metadata(self, name: str, version: int) -> dict[str, Any]:
        """``metadata.json`` of a version (RegistryError if absent)."""
        p = self.version_dir(name, version) / METADATA_FILE
        try:
            meta: dict[str, Any] = orjson.loads(p.read_bytes())
        except FileNotFoundError as exc:
            raise RegistryError(f"no checkpoint metadata at {p}") from exc
        return meta

"""Deployed models for the actor: load an SB3 checkpoint, check it fits, decide fast.

``load_model`` reads a registry checkpoint (the SB3 zip with our metadata inside) and
returns a :class:`LoadedModel`: the SB3 model, its :class:`ModelIdentity` (observation
layout hash, action space, feature-kernel version, from the ``env_config`` training
recorded) and a policy object with one method, ``decide(obs) -> status`` filling
``actions`` and ``probs``:

* :class:`core.policy.FastPolicy` when the network is an SB3 ``ActorCriticPolicy`` the fast
  path covers (flatten extractor over a 1-D Box, ``policy_net`` of Linear layers with Tanh
  or ReLU, Discrete or MultiDiscrete actions);
* :class:`TorchPolicy` (``policy.get_distribution`` + ``mode()`` under ``torch.no_grad``,
  i.e. what ``model.predict(obs, deterministic=True)`` does) for anything else, with the
  reason logged and kept in ``LoadedModel.fallback_reason``.

Loading is slow (torch, zip, JIT warm-up): the actor calls it in a worker thread, never
on the event loop's hot path.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

from core.dtypes import (
    FEATURE_KERNEL_VERSION,
    N_ACTIONS,
    POLICY_ACT_RELU,
    POLICY_ACT_TANH,
    POLICY_BAD_OBS,
    POLICY_OK,
)
from core.features import ACCOUNT_FEATURE_NAMES, MARKET_FEATURE_NAMES, N_FEATURES
from core.policy import FastPolicy, MlpParams, mlp_params
from kalshi_rl.errors import PolicyError

log = logging.getLogger(__name__)

FEATURE_NAMES: tuple[str, ...] = (*MARKET_FEATURE_NAMES, *ACCOUNT_FEATURE_NAMES)


class Policy(Protocol):
    """What the actor calls on every decision."""

    actions: np.ndarray  # int64 [D], overwritten by decide
    probs: np.ndarray  # float64 [sum of action dims], overwritten by decide

    def decide(self, obs: np.ndarray) -> int: ...


def obs_hash(n_features: int, features: list[str] | tuple[str, ...]) -> str:
    """Hash of an observation layout (feature count and names, in order)."""
    blob = orjson.dumps({"n_features": int(n_features), "features": list(features)})
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class ModelIdentity:
    """What must match between a model and the actor running it.

    Attributes:
        obs_hash: ``obs_hash`` of the observation layout the model was trained on.
        action_space: ("Discrete", (5,)) or ("MultiDiscrete", (5, n_slip, n_size)).
        kernel_version: FEATURE_KERNEL_VERSION of the training run's core.features.
    """

    obs_hash: str
    action_space: tuple[str, tuple[int, ...]]
    kernel_version: int

    @classmethod
    def of_core(cls, action_space: tuple[str, tuple[int, ...]]) -> ModelIdentity:
        """The identity of this process's observation kernel with ``action_space``."""
        return cls(obs_hash(N_FEATURES, FEATURE_NAMES), action_space, FEATURE_KERNEL_VERSION)

    @classmethod
    def from_env_config(cls, identity: dict[str, Any]) -> ModelIdentity:
        """From a models row's ``env_config`` (train.run.env_identity's dict).

        Raises:
            PolicyError: when a key is missing (the message names it).
        """
        for key in ("n_features", "features", "env", "feature_kernel_version"):
            if key not in identity:
                raise PolicyError(f"model env_config has no {key!r}: cannot check compatibility")
        env = identity["env"]
        if env.get("action_mode", "DISCRETE") == "MULTI":
            space: tuple[str, tuple[int, ...]] = (
                "MultiDiscrete",
                (N_ACTIONS, len(env["slippage_choices"]), len(env["size_choices"])),
            )
        else:
            space = ("Discrete", (N_ACTIONS,))
        return cls(
            obs_hash(identity["n_features"], identity["features"]),
            space,
            int(identity["feature_kernel_version"]),
        )

    def mismatch(self, other: ModelIdentity) -> str | None:
        """None when ``other`` can replace ``self``; else what differs, in words."""
        problems = []
        if other.obs_hash != self.obs_hash:
            problems.append(f"observation config hash {other.obs_hash} != {self.obs_hash}")
        if other.action_space != self.action_space:
            problems.append(f"action space {other.action_space} != {self.action_space}")
        if other.kernel_version != self.kernel_version:
            problems.append(
                f"feature kernel version {other.kernel_version} != {self.kernel_version}"
            )
        return "; ".join(problems) or None


def space_of(action_space: Any) -> tuple[str, tuple[int, ...]]:
    """A gymnasium space as ("Discrete", (n,)) / ("MultiDiscrete", nvec)."""
    from gymnasium import spaces

    if isinstance(action_space, spaces.Discrete):
        return ("Discrete", (int(action_space.n),))
    if isinstance(action_space, spaces.MultiDiscrete):
        return ("MultiDiscrete", tuple(int(n) for n in np.asarray(action_space.nvec).ravel()))
    return (type(action_space).__name__, ())


# =========================================================================== SB3 export


def export_mlp(model: Any) -> MlpParams:
    """The fast-path weights of an SB3 on-policy model.

    Raises:
        PolicyError: naming what the fast path does not cover (then use TorchPolicy).
    """
    import torch
    from gymnasium import spaces
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.torch_layers import FlattenExtractor

    pol = model.policy
    if not isinstance(pol, ActorCriticPolicy):
        raise PolicyError(f"policy class {type(pol).__name__} is not an ActorCriticPolicy")
    obs_space = pol.observation_space
    if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
        raise PolicyError(f"observation space {obs_space} is not a 1-D Box")
    if not isinstance(pol.pi_features_extractor, FlattenExtractor):
        raise PolicyError(f"features extractor {type(pol.pi_features_extractor).__name__}")
    kind, heads = space_of(pol.action_space)
    if kind not in ("Discrete", "MultiDiscrete"):
        raise PolicyError(f"action space {pol.action_space} is not Discrete/MultiDiscrete")
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    act: int | None = None
    for mod in pol.mlp_extractor.policy_net:
        if isinstance(mod, torch.nn.Linear):
            layers.append(_linear(mod))
        elif isinstance(mod, torch.nn.Tanh | torch.nn.ReLU):
            code = POLICY_ACT_TANH if isinstance(mod, torch.nn.Tanh) else POLICY_ACT_RELU
            if act is not None and act != code:
                raise PolicyError("policy_net mixes activations")
            act = code
        else:
            raise PolicyError(f"policy_net layer {type(mod).__name__} is not Linear/Tanh/ReLU")
    if not isinstance(pol.action_net, torch.nn.Linear):
        raise PolicyError(f"action_net {type(pol.action_net).__name__} is not Linear")
    layers.append(_linear(pol.action_net))
    try:
        return mlp_params(layers, POLICY_ACT_TANH if act is None else act, heads)
    except ValueError as exc:
        raise PolicyError(f"cannot export policy: {exc}") from exc


def _linear(mod: Any) -> tuple[np.ndarray, np.ndarray]:
    w = mod.weight.detach().cpu().numpy().astype(np.float64)
    b = (
        mod.bias.detach().cpu().numpy().astype(np.float64)
        if mod.bias is not None
        else np.zeros(w.shape[0])
    )
    return w, b


class TorchPolicy:
    """The fallback: SB3's own deterministic action (``model.predict``'s path) + probabilities."""

    def __init__(self, model: Any) -> None:
        self.model = model
        _, heads = space_of(model.policy.action_space)
        self.heads = heads
        self.actions = np.zeros(len(heads), dtype=np.int64)
        self.probs = np.zeros(int(sum(heads)), dtype=np.float64)
        self.n_inputs = int(model.policy.observation_space.shape[0])

    def decide(self, obs: np.ndarray) -> int:
        """Run ``model.predict(obs, deterministic=True)`` and read the distribution."""
        import torch

        if obs.shape != (self.n_inputs,):
            raise ValueError(f"observation must have shape ({self.n_inputs},), got {obs.shape}")
        if not np.all(np.isfinite(obs)):
            return POLICY_BAD_OBS
        action, _ = self.model.predict(obs, deterministic=True)
        self.actions[:] = np.asarray(action).reshape(-1)
        pol = self.model.policy
        with torch.no_grad():
            t, _ = pol.obs_to_tensor(obs)
            dist = pol.get_distribution(t).distribution
            parts = dist if isinstance(dist, list) else [dist]
            self.probs[:] = np.concatenate([d.probs.cpu().numpy().reshape(-1) for d in parts])
        return POLICY_OK


# =========================================================================== loading


@dataclass
class LoadedModel:
    """A checkpoint ready to trade (see the module docstring)."""

    path: str
    name: str
    version: int
    model_id: int | None
    identity: ModelIdentity
    env_config: dict[str, Any]
    sb3: Any
    policy: Any
    fast: bool
    fallback_reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name}:v{self.version}"


def _sb3_class(algorithm: str) -> Any:
    from stable_baselines3 import A2C, PPO

    classes = {"PPO": PPO, "A2C": A2C}
    if algorithm.upper() not in classes:
        raise PolicyError(f"unsupported algorithm {algorithm!r} (PPO or A2C)")
    return classes[algorithm.upper()]


def load_model(
    path: str | Path,
    *,
    env_config: dict[str, Any] | None = None,
    name: str | None = None,
    version: int | None = None,
    model_id: int | None = None,
    algorithm: str | None = None,
    fast: bool = True,
) -> LoadedModel:
    """Load a checkpoint zip; build the fast policy when covered (else torch).

    Args:
        path: the SB3 zip (registry checkpoint).
        env_config: the models row's env_config; default: the one in the zip's metadata.
        name, version, model_id, algorithm: registry provenance (default: zip metadata).
        fast: False forces the torch path (benchmarks, parity checks).

    Raises:
        PolicyError: unreadable checkpoint, unknown algorithm, missing identity, or an
            observation/action space that disagrees with its own env_config.
    """
    from kalshi_rl import registry
    from kalshi_rl.errors import RegistryError

    p = Path(path)
    if not p.is_file():
        raise PolicyError(f"checkpoint {p} does not exist")
    try:
        meta = registry.read_embedded_metadata(p)
    except RegistryError:
        meta = {}
    cfg = env_config if env_config is not None else _identity_from_meta(meta)
    if cfg is None:
        raise PolicyError(f"checkpoint {p} carries no env_config and none was given")
    ident = ModelIdentity.from_env_config(cfg)
    algo = algorithm or meta.get("algorithm") or "PPO"
    try:
        sb3 = _sb3_class(algo).load(str(p), device="cpu")
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise PolicyError(f"cannot load {p} as {algo}: {exc}") from exc
    if space_of(sb3.action_space) != ident.action_space:
        raise PolicyError(
            f"{p}: the network's action space {space_of(sb3.action_space)} disagrees with"
            f" its env_config {ident.action_space}"
        )
    if tuple(sb3.observation_space.shape) != (N_FEATURES,):
        raise PolicyError(
            f"{p}: observation shape {tuple(sb3.observation_space.shape)} != ({N_FEATURES},)"
        )
    policy: Any
    reason = None
    if fast:
        try:
            policy = FastPolicy(export_mlp(sb3))
            policy.decide(np.zeros(N_FEATURES, dtype=np.float32))  # JIT warm-up off the hot path
        except PolicyError as exc:
            reason = str(exc)
            log.warning("%s: fast path not available (%s); using torch", p, reason)
            policy = TorchPolicy(sb3)
    else:
        reason = "fast path disabled"
        policy = TorchPolicy(sb3)
    return LoadedModel(
        path=str(p),
        name=name or meta.get("name") or p.stem,
        version=int(version if version is not None else meta.get("version", 0)),
        model_id=model_id,
        identity=ident,
        env_config=cfg,
        sb3=sb3,
        policy=policy,
        fast=isinstance(policy, FastPolicy),
        fallback_reason=reason,
        metadata=meta,
    )


def _identity_from_meta(meta: dict[str, Any]) -> dict[str, Any] | None:
    cfg = meta.get("config")
    if isinstance(cfg, dict):
        ident = cfg.get("identity")
        if isinstance(ident, dict):
            return ident
    return None

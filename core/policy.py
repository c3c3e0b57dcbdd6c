"""The actor's fast path: an SB3 MLP policy's forward pass as a Numba kernel.

An SB3 ``ActorCriticPolicy`` with a flatten extractor is, for the action, a chain of
``Linear`` layers with one activation between them (``mlp_extractor.policy_net``) and a
``Linear`` action head (``action_net``) whose output are logits: one block of ``n_d``
logits per action dimension (``Discrete(n)`` has one block, ``MultiDiscrete(nvec)`` one per
entry).  SB3's deterministic action is the argmax of each block; the action
probabilities are its softmax.  This module holds those weights in flat float64 arrays
and evaluates them without torch (``kalshi_rl.trade.policy`` exports them from a loaded
SB3 model and falls back to ``model.predict`` for anything else).

Layout (``MlpParams``): layer ``l`` maps ``layer_in[l]`` inputs to ``layer_out[l]`` outputs
with ``W`` stored input-major (``W.T`` row-major, ``[in, out]``) at ``params[layer_off[l]:]``
followed by its bias; the last layer is the action head (no activation), the others use
``act`` (POLICY_ACT_*).

Arithmetic is float64 (torch uses float32): logits agree to ~1e-6 and the argmax agrees
except on ties closer than float32 rounding, which the tests check do not occur on
recorded observations.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from core.dtypes import POLICY_ACT_RELU, POLICY_ACT_TANH, POLICY_BAD_OBS, POLICY_OK


class MlpParams(NamedTuple):
    """Weights of an MLP policy in kernel form (see the module docstring)."""

    params: np.ndarray  # float64 [P]
    layer_in: np.ndarray  # int64 [L]
    layer_out: np.ndarray  # int64 [L]
    layer_off: np.ndarray  # int64 [L]
    act: int  # POLICY_ACT_*
    heads: np.ndarray  # int64 [D] logits per action dimension (sum = layer_out[-1])
    width: int  # widest layer (scratch size)

    @property
    def n_inputs(self) -> int:
        return int(self.layer_in[0])

    @property
    def n_logits(self) -> int:
        return int(self.layer_out[-1])


@njit(cache=True)
def mlp_logits(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    params: np.ndarray,
    layer_in: np.ndarray,
    layer_out: np.ndarray,
    layer_off: np.ndarray,
    act: int,
    obs: np.ndarray,
    logits: np.ndarray,
    buf_a: np.ndarray,
    buf_b: np.ndarray,
) -> int:
    """Forward pass to the action logits.

    Args:
        params, layer_in, layer_out, layer_off, act: an MlpParams' fields.
        obs: float32/float64 [layer_in[0]] observation.
        logits: float64 [layer_out[-1]] out.
        buf_a, buf_b: float64 [>= widest layer] scratch.

    Returns:
        POLICY_OK, or POLICY_BAD_OBS (nothing written) when ``obs`` has a NaN/inf.
    """
    n0 = layer_in[0]
    for i in range(n0):
        v = float(obs[i])
        if not np.isfinite(v):
            return POLICY_BAD_OBS
        buf_a[i] = v
    x = buf_a
    y = buf_b
    n_layers = layer_in.shape[0]
    for li in range(n_layers):
        n_in = layer_in[li]
        n_out = layer_out[li]
        off = layer_off[li]
        boff = off + n_in * n_out
        last = li == n_layers - 1
        out = logits if last else y
        for j in range(n_out):
            out[j] = params[boff + j]
        # input-major: each output keeps its own running sum, in the order b + w0 x0 + w1 x1
        # + ... (the same float64 arithmetic as a per-output dot), and the inner loop runs
        # over independent outputs, which vectorizes
        for i in range(n_in):
            xi = x[i]
            w = params[off + i * n_out : off + (i + 1) * n_out]
            for j in range(n_out):
                out[j] += w[j] * xi
        if not last:
            if act == POLICY_ACT_TANH:
                for j in range(n_out):
                    y[j] = np.tanh(y[j])
            elif act == POLICY_ACT_RELU:
                for j in range(n_out):
                    v = y[j]
                    y[j] = v if v > 0.0 else 0.0
            x, y = y, x
    return POLICY_OK


@njit(cache=True)
def heads_decide(logits: np.ndarray, heads: np.ndarray, actions: np.ndarray, probs: np.ndarray):
    """Argmax action and softmax probabilities of each action dimension.

    Args:
        logits: float64 [sum(heads)].
        heads: int64 [D] logits per dimension.
        actions: int64 [D] out (first index of the maximum, like torch.argmax).
        probs: float64 [sum(heads)] out.
    """
    off = 0
    for d in range(heads.shape[0]):
        n = heads[d]
        best = 0
        m = logits[off]
        for k in range(1, n):
            if logits[off + k] > m:
                m = logits[off + k]
                best = k
        z = 0.0
        for k in range(n):
            e = np.exp(logits[off + k] - m)
            probs[off + k] = e
            z += e
        for k in range(n):
            probs[off + k] /= z
        actions[d] = best
        off += n


@njit(cache=True)
def policy_decide(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    params: np.ndarray,
    layer_in: np.ndarray,
    layer_out: np.ndarray,
    layer_off: np.ndarray,
    act: int,
    heads: np.ndarray,
    obs: np.ndarray,
    actions: np.ndarray,
    probs: np.ndarray,
    logits: np.ndarray,
    buf_a: np.ndarray,
    buf_b: np.ndarray,
) -> int:
    """Deterministic action (argmax per dimension) and probabilities for one observation.

    Returns:
        POLICY_OK or POLICY_BAD_OBS (``actions``/``probs`` untouched).
    """
    st = mlp_logits(params, layer_in, layer_out, layer_off, act, obs, logits, buf_a, buf_b)
    if st != POLICY_OK:
        return st
    heads_decide(logits, heads, actions, probs)
    return POLICY_OK


@njit(cache=True)
def policy_decide_batch(  # noqa: PLR0917 -- njit kernels take positional arrays/scalars
    params: np.ndarray,
    layer_in: np.ndarray,
    layer_out: np.ndarray,
    layer_off: np.ndarray,
    act: int,
    heads: np.ndarray,
    obs: np.ndarray,
    actions: np.ndarray,
    probs: np.ndarray,
    status: np.ndarray,
) -> None:
    """``policy_decide`` for every row of ``obs`` [N, F]; status [N] per row."""
    width = 0
    for li in range(layer_in.shape[0]):
        width = max(width, layer_in[li], layer_out[li])
    logits = np.empty(layer_out[-1], dtype=np.float64)
    buf_a = np.empty(width, dtype=np.float64)
    buf_b = np.empty(width, dtype=np.float64)
    for r in range(obs.shape[0]):
        status[r] = policy_decide(
            params, layer_in, layer_out, layer_off, act, heads, obs[r],
            actions[r], probs[r], logits, buf_a, buf_b,
        )  # fmt: skip


# =========================================================================== facade


def mlp_params(
    layers: list[tuple[np.ndarray, np.ndarray]], act: int, heads: list[int] | tuple[int, ...]
) -> MlpParams:
    """Pack ``[(W [out, in], b [out]), ...]`` (hidden layers, then the action head).

    Raises:
        ValueError: on inconsistent shapes, an unknown activation or heads that do not
            add up to the head's outputs.
    """
    if not layers:
        raise ValueError("an MLP policy needs at least the action head layer")
    if act not in (POLICY_ACT_TANH, POLICY_ACT_RELU):
        raise ValueError(f"unknown activation code {act}")
    parts: list[np.ndarray] = []
    lin, lout, loff = [], [], []
    off = 0
    prev = None
    for k, (w_in, b_in) in enumerate(layers):
        w = np.asarray(w_in, dtype=np.float64)
        b = np.asarray(b_in, dtype=np.float64)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise ValueError(
                f"layer {k}: W must be [out, in] and b [out], got {w.shape}, {b.shape}"
            )
        if prev is not None and w.shape[1] != prev:
            raise ValueError(f"layer {k} takes {w.shape[1]} inputs, layer {k - 1} gives {prev}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise ValueError(f"layer {k} has non-finite weights")
        lin.append(w.shape[1])
        lout.append(w.shape[0])
        loff.append(off)
        parts += [w.T.ravel(), b]  # input-major (mlp_logits' loop order)
        off += w.size + b.size
        prev = w.shape[0]
    h = np.asarray(heads, dtype=np.int64)
    if h.ndim != 1 or h.size == 0 or np.any(h < 1) or int(h.sum()) != lout[-1]:
        raise ValueError(f"heads {list(heads)} must be >= 1 and sum to {lout[-1]} logits")
    return MlpParams(
        np.ascontiguousarray(np.concatenate(parts)),
        np.asarray(lin, dtype=np.int64),
        np.asarray(lout, dtype=np.int64),
        np.asarray(loff, dtype=np.int64),
        int(act),
        h,
        int(max(*lin, *lout)),
    )


class FastPolicy:
    """One MLP policy with its scratch buffers: ``decide(obs)`` without allocation.

    ``actions`` [D] and ``probs`` [sum(heads)] are owned by this object and overwritten
    by every call: copy what you keep.
    """

    def __init__(self, p: MlpParams) -> None:
        self.p = p
        self.actions = np.zeros(p.heads.shape[0], dtype=np.int64)
        self.probs = np.zeros(p.n_logits, dtype=np.float64)
        self._logits = np.zeros(p.n_logits, dtype=np.float64)
        self._a = np.zeros(p.width, dtype=np.float64)
        self._b = np.zeros(p.width, dtype=np.float64)
        # the forward pass's arguments in a fused kernel's order (weights, then scratch),
        # built once: the actor's hot path passes them without ~11 attribute loads a call
        self.step_args = (
            p.params, p.layer_in, p.layer_out, p.layer_off, p.act, p.heads,
            self.actions, self.probs, self._logits, self._a, self._b,
        )  # fmt: skip

    def decide(self, obs: np.ndarray) -> int:
        """Run the policy on ``obs`` (float32 [n_inputs]); POLICY_OK or POLICY_BAD_OBS."""
        if obs.shape != (self.p.n_inputs,):
            raise ValueError(f"observation must have shape ({self.p.n_inputs},), got {obs.shape}")
        p = self.p
        return int(
            policy_decide(
                p.params, p.layer_in, p.layer_out, p.layer_off, p.act, p.heads, obs,
                self.actions, self.probs, self._logits, self._a, self._b,
            )
        )  # fmt: skip

    def decide_batch(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(actions [N, D], probs [N, sum(heads)], status [N]) for obs [N, n_inputs]."""
        if obs.ndim != 2 or obs.shape[1] != self.p.n_inputs:
            raise ValueError(f"observations must be [N, {self.p.n_inputs}], got {obs.shape}")
        p = self.p
        n = obs.shape[0]
        actions = np.zeros((n, p.heads.shape[0]), dtype=np.int64)
        probs = np.zeros((n, p.n_logits), dtype=np.float64)
        status = np.zeros(n, dtype=np.int64)
        policy_decide_batch(
            p.params, p.layer_in, p.layer_out, p.layer_off, p.act, p.heads, obs,
            actions, probs, status,
        )  # fmt: skip
        return actions, probs, status

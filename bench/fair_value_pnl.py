"""Where a policy's P&L comes from, measured against the fair value instead of the outcome.

A trade of q contracts at price c has expected value q * (fair - c) - fee, where fair is
the probability the market's result will pay (the YES side's, or 1 - it for NO).  Summed
over a policy's trades it has the same expectation as the realized P&L (settlement +
trading + mark - fees) but none of the coin-flip noise of the results, so it separates
"the rule has an edge" from "the rule was lucky on these markets" -- and it does not care
whether a position was closed (realized trading) or held to settlement: that split is
bookkeeping.  The fair value is the sim's: ``baselines.fair_from_quote`` inverts the
planted bias (docs/sim.md) on the quoted mid, as the bias-aware rule does.

    python bench/fair_value_pnl.py --dataset /tmp/ppo-P/rec/dataset --test-fraction 0.2 \
        [--model /tmp/ppo-P/.../model.zip]

Prints per policy: trades, realized P&L, the fair-value P&L, and the fair-value P&L of
its YES buys, NO buys and closing trades separately; plus the lag-1 autocorrelation of
the mid's changes (negative = mean-reverting noise a round-tripper could farm).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from core.dtypes import (
    ACT_BUY_NO,
    ACT_BUY_YES,
    COUNT_SCALE,
    MONEY_SCALE,
    SIM_BIAS_FAVORITE,
    SIM_BIAS_LONGSHOT,
    SIM_DEFAULT_BIAS,
)
from core.features import MARKET_FEATURE_NAMES
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.env.vec import KalshiVecEnv
from kalshi_rl.store.parquet import load_dataset
from kalshi_rl.train.baselines import (
    ModelPolicy,
    Policy,
    baseline_policies,
    fair_from_quote,
    reference_policies,
)
from kalshi_rl.train.evaluate import eval_config, settled_only
from kalshi_rl.train.run import split_train_val_test

_MID = MARKET_FEATURE_NAMES.index("mid")
_TWO = MARKET_FEATURE_NAMES.index("two_sided")


def _value(position: int, fair: float) -> float:
    """Dollars the position (count units, + YES / - NO) is worth at the fair probability."""
    c = position / COUNT_SCALE
    return c * fair if c > 0 else -c * (1.0 - fair)


def fair_pnl(ds, policy: Policy, config: EnvConfig) -> dict[str, float]:
    """Trade every segment of ``ds`` once with ``policy``; the fair-value split of its trades."""
    venv = KalshiVecEnv(ds, n_envs=1, config=eval_config(config), seed=0)
    bind = getattr(policy, "bind", None)
    if bind is not None:
        bind(venv.batch, ds)
    obs = np.asarray(venv.reset())
    n_eps = venv.batch.eligible.size
    out = {"yes_buys": 0.0, "no_buys": 0.0, "closing": 0.0, "trades": 0, "pnl": 0.0}
    done = 0
    pos = venv.batch.pos
    while done < n_eps:
        o = obs[0]
        fair = (
            float(fair_from_quote(np.clip(o[_MID], 1e-4, 1 - 1e-4), SIM_DEFAULT_BIAS,
                                  SIM_BIAS_LONGSHOT, SIM_BIAS_FAVORITE))
            if o[_TWO] > 0.5 else np.nan
        )  # fmt: skip
        p0, c0 = int(pos[0]["position"]), int(pos[0]["cash"])
        a = policy.act(obs, venv.batch.masks)
        obs_n, _, dones, infos = venv.step(a)
        if dones[0]:
            done += 1
            out["pnl"] += float(infos[0]["pnl"])
            obs = np.asarray(obs_n)
            continue  # the last decision's fill and the settlement share this step
        p1, c1 = int(pos[0]["position"]), int(pos[0]["cash"])
        obs = np.asarray(obs_n)
        if p1 == p0 or np.isnan(fair):
            continue
        out["trades"] += 1
        # value change at the fair price: YES contracts are worth fair, NO ones 1 - fair
        edge = (c1 - c0) / MONEY_SCALE + _value(p1, fair) - _value(p0, fair)
        opening = abs(p1) > abs(p0)
        if not opening:
            out["closing"] += edge
        elif int(a[0]) == ACT_BUY_YES:
            out["yes_buys"] += edge
        elif int(a[0]) == ACT_BUY_NO:
            out["no_buys"] += edge
    out["fair_pnl"] = out["yes_buys"] + out["no_buys"] + out["closing"]
    return out


def mid_autocorr(ds) -> float:
    """Lag-1 autocorrelation of one-step mid changes within segments (two-sided rows)."""
    xs, ys = [], []
    for s in range(ds.n_segments):
        m = ds.features[ds.seg_start[s] : ds.seg_end[s], _MID].astype(np.float64)
        ok = ds.features[ds.seg_start[s] : ds.seg_end[s], _TWO] > 0.5
        d = np.diff(np.where(ok, m, np.nan))
        xs.append(d[:-1])
        ys.append(d[1:])
    x, y = np.concatenate(xs), np.concatenate(ys)
    keep = np.isfinite(x) & np.isfinite(y)
    return float(np.corrcoef(x[keep], y[keep])[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--model", type=Path, action="append", default=[])
    a = ap.parse_args()
    ds = load_dataset(a.dataset)
    split = split_train_val_test(ds, a.val_fraction, a.test_fraction)
    test = settled_only(split.test)
    print(f"test: {test.n_segments} settled segments; mid lag-1 autocorr (all data)"
          f" {mid_autocorr(ds):+.3f}")  # fmt: skip
    pols: list[Policy] = [*baseline_policies(0)[2:], *reference_policies()]
    if a.model:
        from stable_baselines3 import PPO

        pols += [ModelPolicy(PPO.load(m, device="cpu"), name=m.parent.name) for m in a.model]
    print("| policy | trades | realized P&L | fair-value P&L | YES buys | NO buys | closing |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for pol in pols:
        r = fair_pnl(test, pol, EnvConfig())
        print(
            f"| {pol.name} | {r['trades']} | {r['pnl']:+.2f} | {r['fair_pnl']:+.2f} |"
            f" {r['yes_buys']:+.2f} | {r['no_buys']:+.2f} | {r['closing']:+.2f} |"
        )


if __name__ == "__main__":
    main()

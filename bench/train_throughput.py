"""PPO training throughput (env-steps/s end to end) and learning quality, side by side.

Configurations, all on the same synthetic data (``random_walk_dataset(40, 400)``):

* ``ours``            -- ``kalshi_rl.train.run.Args`` defaults on the Numba ``KalshiVecEnv``
                          (64 envs x 64 steps, batch 512, 15 epochs, lr 7e-4, GAE 0.9,
                          ent_coef 0.005, 64x64, 1 torch thread).
* ``ours_dummyvec``   -- the same hyperparameters over SB3 ``DummyVecEnv`` of 64
                          ``KalshiTradingEnv`` (shows what the vectorised kernel buys).
* ``sb3_default``     -- SB3 PPO defaults (1 env, n_steps 2048, batch 64, 10 epochs) with
                          torch's default thread count.
* ``sb3_default_1t``  -- the same with 1 torch thread.

Then learning, for each of ``--seeds``: ``ours`` and ``sb3_default_1t`` train
``--learn-steps`` env-steps (equal samples), and ``ours_equal_time`` trains for the
wall-clock time SB3 needed; each is evaluated on the held-out quarter of the segments with
the baselines (``train.evaluate``; report JSON + PNG of the last seed next to ``--out``).

Run: ``python bench/train_throughput.py [--speed-steps 65536] [--learn-steps 100000]``
Prints a table and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from kalshi_rl.env.config import EnvConfig
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.env.trading import KalshiTradingEnv
from kalshi_rl.env.vec import KalshiVecEnv
from kalshi_rl.train.baselines import ModelPolicy, baseline_policies
from kalshi_rl.train.evaluate import evaluate
from kalshi_rl.train.run import Args, make_model, split_segments

DEFAULT_THREADS = torch.get_num_threads()


def _ours(venv: Any, seed: int) -> Any:
    return make_model(Args(dataset="-", seed=seed), venv)


def _sb3_default(venv: Any, seed: int) -> Any:
    return PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0)


def measure(build: Any, venv: Any, steps: int, threads: int, seed: int = 0) -> tuple[float, Any]:
    """Env-steps/s of ``model.learn(steps)`` after one warm-up rollout."""
    torch.set_num_threads(threads)
    model = build(venv, seed)
    model.learn(model.n_steps * venv.num_envs)  # warm-up: JIT, allocator, first update
    t0 = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - t0), model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speed-steps", type=int, default=65_536)
    ap.add_argument("--sb3-speed-steps", type=int, default=8_192)
    ap.add_argument("--learn-steps", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/bench/train_throughput.json"))
    a = ap.parse_args()
    a.out.parent.mkdir(parents=True, exist_ok=True)

    ds = random_walk_dataset(40, 400, seed=0)
    train_ds, eval_ds = split_segments(ds, 0.25)
    cfg = EnvConfig()
    res: dict[str, Any] = {"speed": {}, "learning": {}}

    def vec() -> KalshiVecEnv:
        return KalshiVecEnv(train_ds, n_envs=64, config=cfg, seed=0)

    def dummy(n: int) -> DummyVecEnv:
        venv = DummyVecEnv([lambda: KalshiTradingEnv(train_ds, cfg) for _ in range(n)])
        venv.seed(0)
        return venv

    speed = res["speed"]
    speed["ours"], _ = measure(_ours, vec(), a.speed_steps, 1)
    speed["ours_dummyvec"], _ = measure(_ours, dummy(64), a.speed_steps, 1)
    speed["sb3_default"], _ = measure(_sb3_default, dummy(1), a.sb3_speed_steps, DEFAULT_THREADS)
    speed["sb3_default_1t"], _ = measure(_sb3_default, dummy(1), a.sb3_speed_steps, 1)
    for k, v in speed.items():
        print(f"{k:16s} {v:10.0f} env-steps/s   ours/this = {speed['ours'] / v:6.1f}x")

    learning: dict[str, list[dict[str, Any]]] = {}
    for seed in a.seeds:
        policies = []
        t_sb3 = 0.0
        for label, build, venv, steps in (
            ("sb3_default_1t", _sb3_default, dummy(1), a.learn_steps),
            ("ours", _ours, vec(), a.learn_steps),
            ("ours_equal_time", _ours, vec(), 0),
        ):
            torch.set_num_threads(1)
            model = build(venv, seed)
            t0 = time.perf_counter()
            if steps:
                model.learn(steps)
            else:  # as many env-steps as fit in SB3's wall-clock time
                while time.perf_counter() - t0 < t_sb3:
                    model.learn(model.n_steps * venv.num_envs * 8, reset_num_timesteps=False)
            dt = time.perf_counter() - t0
            t_sb3 = t_sb3 or dt
            policies.append(ModelPolicy(model, name=label))
            learning.setdefault(label, []).append(
                {"seed": seed, "seconds": dt, "timesteps": int(model.num_timesteps)}
            )
        report = evaluate(
            eval_ds,
            [*policies, *baseline_policies(0)],
            cfg,
            out_dir=a.out.parent,
            name="train_throughput_eval",
        )
        for label, runs in learning.items():
            runs[-1].update(report["policies"][label])
        print(f"\nseed {seed}: held-out evaluation ({eval_ds.n_segments} segments)")
        for name, m in report["policies"].items():
            steps = learning[name][-1]["timesteps"] if name in learning else 0
            print(
                f"{name:16s} steps {steps:8d}  pnl {m['total_pnl']:8.2f}  fees {m['fees']:7.2f}"
                f"  sharpe {m['sharpe']:5.2f}  maxdd {m['max_drawdown']:6.2f}"
                f"  trades {m['trades']}"
            )
    print("\nmean over seeds")
    for label, runs in learning.items():
        pnl = sum(r["total_pnl"] for r in runs) / len(runs)
        sharpe = sum(r["sharpe"] for r in runs) / len(runs)
        print(f"{label:16s} pnl {pnl:8.2f}  sharpe {sharpe:5.2f}")
    res["learning"] = learning
    a.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

"""Train / validation / test split by segment and checkpoint selection on validation P&L."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from kalshi_rl.env.config import EnvConfig
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.env.vec import KalshiVecEnv
from kalshi_rl.errors import ConfigError
from kalshi_rl.train.baselines import ModelPolicy
from kalshi_rl.train.callbacks import EvalCallback, ListSink
from kalshi_rl.train.evaluate import run_policy
from kalshi_rl.train.run import Args, make_model, split_train_val_test


def test_split_is_train_then_validation_then_test_by_segment() -> None:
    ds = random_walk_dataset(10, 20, seed=0)
    sp = split_train_val_test(ds, 0.2, 0.2)
    assert sp.val is not None
    assert (sp.train.n_segments, sp.val.n_segments, sp.test.n_segments) == (6, 2, 2)
    # in time order, no segment in two parts
    assert (sp.train.features == ds.features[:120]).all()
    assert (sp.val.features == ds.features[120:160]).all()
    assert (sp.test.features == ds.features[160:]).all()
    assert list(sp.val.seg_result) == list(ds.seg_result[6:8])


def test_split_without_enough_segments_drops_validation() -> None:
    ds = random_walk_dataset(2, 20, seed=0)
    sp = split_train_val_test(ds, 0.2, 0.5)
    assert sp.val is None and sp.train.n_segments == 1 and sp.test.n_segments == 1
    sp0 = split_train_val_test(random_walk_dataset(10, 20, seed=0), 0.0, 0.2)
    assert sp0.val is None and sp0.test.n_segments == 2


def test_val_fraction_is_validated() -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        Args(dataset="x", eval_fraction=0.5, val_fraction=0.5)


def test_restore_best_loads_the_policy_of_the_best_validation_pnl() -> None:
    torch.set_num_threads(1)
    ds = random_walk_dataset(12, 120, seed=3)
    sp = split_train_val_test(ds, 0.25, 0.25)
    assert sp.val is not None
    args = Args(dataset="-", n_envs=8, n_steps=64, batch_size=256, n_epochs=2, seed=1)
    venv = KalshiVecEnv(sp.train, n_envs=8, config=EnvConfig(), seed=1)
    model = make_model(args, venv)
    sink = ListSink()
    cb = EvalCallback(sp.val, EnvConfig(), sink, every=512, keep_best=True)
    model.learn(total_timesteps=4096, callback=cb)
    pnls = [m["eval/total_pnl"] for _, m in cb.history]
    assert len(pnls) >= 5 and cb.history[-1][0] == model.num_timesteps  # end evaluated
    assert len(sink.rows) == len(pnls)
    best = cb.restore_best()
    assert best is not None
    assert best[1] == max(pnls) and best[0] == cb.history[int(np.argmax(pnls))][0]
    # the model now trades the validation segments exactly as it did at that evaluation
    again, _ = run_policy(sp.val, ModelPolicy(model), EnvConfig())
    assert again.total_pnl == best[1]


def test_without_keep_best_the_final_policy_stays() -> None:
    torch.set_num_threads(1)
    ds = random_walk_dataset(8, 80, seed=4)
    sp = split_train_val_test(ds, 0.25, 0.25)
    assert sp.val is not None
    args = Args(dataset="-", n_envs=8, n_steps=64, batch_size=256, n_epochs=1, seed=2)
    model = make_model(args, KalshiVecEnv(sp.train, n_envs=8, config=EnvConfig(), seed=2))
    cb = EvalCallback(sp.val, EnvConfig(), ListSink(), every=0)
    model.learn(total_timesteps=1024, callback=cb)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    assert cb.restore_best() is None and len(cb.history) == 1  # only the end evaluation
    assert all(torch.equal(before[k], v) for k, v in model.policy.state_dict().items())


def test_learning_rate_decays_linearly_to_its_final_value() -> None:
    torch.set_num_threads(1)
    ds = random_walk_dataset(4, 60, seed=5)
    venv = KalshiVecEnv(ds, n_envs=8, config=EnvConfig(), seed=0)
    args = Args(dataset="-", n_envs=8, n_steps=64, batch_size=256, n_epochs=1)
    assert (args.learning_rate, args.learning_rate_final) == (7e-4, 0.0)  # shipped defaults
    model = make_model(
        dataclasses.replace(args, learning_rate=1e-3, learning_rate_final=1e-4), venv
    )
    assert model.lr_schedule(1.0) == pytest.approx(1e-3)
    assert model.lr_schedule(0.5) == pytest.approx(5.5e-4)
    assert model.lr_schedule(0.0) == pytest.approx(1e-4)
    seen: list[float] = []

    class LrAtRolloutEnd(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:  # before the update: the rate of the last one
            seen.append(self.model.policy.optimizer.param_groups[0]["lr"])

    model.learn(total_timesteps=1024, callback=LrAtRolloutEnd())  # two rollouts of 512
    seen.append(model.policy.optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx([1e-3, 5.5e-4, 1e-4])  # progress 1, 0.5, 0 of the run
    const = make_model(Args(dataset="-", n_envs=8, n_steps=64, batch_size=256,
                            learning_rate=3e-4, learning_rate_final=3e-4), venv)  # fmt: skip
    assert const.lr_schedule(0.0) == const.lr_schedule(1.0) == pytest.approx(3e-4)

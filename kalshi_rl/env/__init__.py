"""Trading environments over preloaded datasets (no I/O in reset/step).

Public API: ``trading.KalshiTradingEnv`` (Gymnasium), ``vec.KalshiVecEnv`` (SB3 VecEnv),
``config.EnvConfig`` / ``SegmentOrder`` / ``ActionMode``, ``kernels.step_envs`` (the one
step kernel), ``synthetic.random_walk_dataset`` (test/bench data).  See docs/training.md.
"""

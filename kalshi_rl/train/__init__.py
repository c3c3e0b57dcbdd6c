"""Training runs, callbacks, evaluation and baselines.

Public API: ``run.Args`` / ``run.train`` (one run end to end), ``callbacks``
(``ProgressCallback``, ``EvalCallback``, ``RunRecorder``), ``evaluate.evaluate`` (report
JSON + PNG), ``baselines`` (hold, random, cheaper side, mean reversion).
See docs/training.md.
"""

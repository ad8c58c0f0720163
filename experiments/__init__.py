"""The experiment library behind ``train_controller.py`` and ``evaluate.py``.

Where things live (the file names say it):

- :mod:`experiments.config`: seeds (training, selection 500, held-out 1000+), the typed
  settings of a training (:class:`~experiments.config.TrainSettings`) and of an evaluation
  (:class:`~experiments.config.EvaluationSettings`), validated once;
- :mod:`experiments.presets`: the named configurations (``paper``, ``recommended``, ...);
- :mod:`experiments.training`: ``train(settings, out) -> summary``, the one training entry point;
- :mod:`experiments.methods`: the baseline catalogue and its grids;
- :mod:`experiments.sweep`: run specs, their persistence and the backends that run them (the
  only sweep): the local process pool, or :mod:`experiments.ray_backend` (Ray, imported only
  when asked for);
- :mod:`experiments.protocol`: the tuning protocol, ``evaluate_methods`` / ``run_evaluation``;
- :mod:`experiments.stats`: mean ± std, median, collapse, summary rows (defined once);
- :mod:`experiments.report` and :mod:`experiments.plots`: tables and figures.

Nothing here is imported by :mod:`envs` or :mod:`agents` (they do not depend on experiments).
"""

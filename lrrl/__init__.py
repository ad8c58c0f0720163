"""The experiment library behind ``train_controller.py`` and ``evaluate.py``.

Where things live (the file names say it):

- :mod:`lrrl.config`: seeds (training, selection 500, held-out 1000+), the typed
  settings of a training (:class:`~lrrl.config.TrainSettings`) and of an evaluation
  (:class:`~lrrl.config.EvaluationSettings`), validated once;
- :mod:`lrrl.presets`: the named configurations (``paper``, ``recommended``, ...);
- :mod:`lrrl.training`: ``train(settings, out) -> summary``, the one training entry point;
- :mod:`lrrl.methods`: the baseline catalogue and its grids;
- :mod:`lrrl.sweep`: run specs, their persistence and the backends that run them (the
  only sweep): the local process pool, or :mod:`lrrl.ray_backend` (Ray, imported only
  when asked for);
- :mod:`lrrl.protocol`: the tuning protocol, ``evaluate_methods`` / ``run_evaluation``;
- :mod:`lrrl.stats`: mean ± std, median, collapse, summary rows (defined once);
- :mod:`lrrl.report` and :mod:`lrrl.plots`: tables and figures.

Nothing here is imported by :mod:`envs` or :mod:`agents` (they do not depend on the library).
"""

"""lrrl: learning the learning rate with reinforcement learning; the experiment library behind
``train_controller.py`` and ``evaluate.py`` (``lrrl-train``, ``lrrl-evaluate``, ``python -m lrrl``).

Importing ``lrrl`` registers the environments with gymnasium (:mod:`envs`), so that in a fresh
interpreter ``gymnasium.make("lrrl:lrrl/LearningRate-v0")`` works. It loads this distribution's
``envs`` package from beside this one, by location, even where another ``envs`` (a local
``envs/`` folder, common in RL repositories) comes first on ``sys.path``: that folder then stays
unimported, and ``import envs`` in the same process gives this distribution's. If another ``envs``
is already imported, that is a clear error: import ``lrrl`` first, or rename the local folder.

Where things live (the file names say it):

- :mod:`lrrl.config`: seeds (training, selection 500, held-out 1000+), the typed
  settings of a training (:class:`~lrrl.config.TrainSettings`) and of an evaluation
  (:class:`~lrrl.config.EvaluationSettings`), validated once;
- :mod:`lrrl.presets`: the named configurations (``paper``, ``recommended``, ``digits-capped``, ...);
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
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_ENVS_DIR = Path(__file__).resolve().parent.parent / "envs"


def _load_envs():
    """This distribution's ``envs`` package, imported as ``envs`` from its own directory."""
    loaded = sys.modules.get("envs")
    if loaded is not None:
        where = Path(getattr(loaded, "__file__", None) or "").resolve().parent
        if where != _ENVS_DIR:
            raise ImportError(f"another module named 'envs' ({getattr(loaded, '__file__', None) or loaded!r}) "
                              f"is already imported, so lrrl's environments ({_ENVS_DIR}) cannot be: import "
                              f"lrrl before it, or rename the local envs folder")
        return loaded
    spec = importlib.util.spec_from_file_location("envs", _ENVS_DIR / "__init__.py",
                                                  submodule_search_locations=[str(_ENVS_DIR)])
    if spec is None or spec.loader is None:
        raise ImportError(f"lrrl's environments are missing: no {_ENVS_DIR / '__init__.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["envs"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["envs"]
        raise
    return module


envs = _load_envs()
__version__ = envs.__version__

__all__ = ["__version__"]

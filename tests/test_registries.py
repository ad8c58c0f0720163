"""Adding an agent or a baseline takes its own module and one line in its registry."""
from __future__ import annotations

from lrrl import methods, protocol


def test_a_new_baseline_is_its_module_and_one_registry_line(tmp_path, monkeypatch):
    from lrrl.config import EvaluationSettings
    from extensions.half_rate import HalfBestRate

    monkeypatch.setitem(methods.BASELINE_METHODS, "half-sgd", HalfBestRate())  # the one registry line
    assert methods.parse_baselines("vsgd,half-sgd") == ["vsgd", "half-sgd"]
    assert "half-sgd" in methods.parse_baselines("all")
    st = EvaluationSettings(task="regression2d", updates=10, seeds=[1000], eval_every=5,
                            baselines=["vsgd,half-sgd"], episodes=0).validate()
    results = protocol.evaluate_methods(st, [], tmp_path, progress=False)
    assert [r["method"] for r in results.rows] == ["vSGD", "SGD at half the best decade rate"]
    grid = results.grids["SGD (decade grid)"]
    best = min(grid, key=grid.get)
    assert results.rows[1]["param"] == best / 2
    assert any(r["spec"]["family"] == "half-sgd" for r in results.records.values())


def test_a_new_agent_is_its_module_and_one_registry_line(tmp_path, monkeypatch):
    from agents import registry
    from agents.checkpoint import load_controller
    from extensions.tiny_agent import TINY, TinyActorCritic
    from lrrl import training
    from lrrl.config import TrainSettings

    monkeypatch.setitem(registry.AGENT_TYPES, TINY.name, TINY)  # the one registry line
    settings = TrainSettings.from_preset("actor-critic-relative", agent="tiny-actor-critic", env={"episode_length": 6},
                                         agent_overrides={"gamma": 0.9}, task="regression2d", steps=6,
                                         checkpoint_every=0, select_best=0)
    summary = training.train(settings, tmp_path / "run", progress=False)
    assert summary["agent"] == "tiny-actor-critic" and summary["steps_total"] == 6
    ctrl = load_controller(tmp_path / "run")
    assert isinstance(ctrl.model, TinyActorCritic) and ctrl.model.noise_std == 0.05 and ctrl.model.gamma == 0.9
    action, _ = ctrl.predict(ctrl.model.observation_space.sample())
    assert ctrl.model.action_space.contains(action.astype(ctrl.model.action_space.dtype))

"""Each env setting is defined once (envs.config); the settings schema, the flags of
train_controller.py, the controller's recorded keys, the scheduler's ControlState keys and the
presets are derived from it, so a key added in only one of them fails here."""
from __future__ import annotations

import dataclasses
import inspect
import json

import gymnasium as gym
import pytest

from envs import LearningRateEnv
from envs.config import (ControlConfig, EnvConfig, PrimaryConfig, RewardConfig, controller_keys,
                         flag_settings, settings_fields)


def _json_value(value):
    return list(value) if isinstance(value, tuple) else value


def test_every_setting_has_one_group_and_a_unique_flat_name():
    names = [f.name for cls in (PrimaryConfig, ControlConfig, RewardConfig) for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names)) == len(settings_fields())
    for name, f in settings_fields().items():
        assert f.metadata["help"] and f.metadata["check"], name


def test_the_schema_checks_exactly_the_settings_and_accepts_their_defaults():
    from agents.settings_schema import env_fields

    schema = env_fields()
    assert set(schema) - {"task"} == set(settings_fields())
    for name, f in settings_fields().items():
        default = getattr(EnvConfig().primary if name in {g.name for g in dataclasses.fields(PrimaryConfig)}
                          else EnvConfig().control if name in {g.name for g in dataclasses.fields(ControlConfig)}
                          else EnvConfig().reward, name)
        check, what = schema[name]
        assert check(_json_value(default)), f"{name}: default {default!r} is not {what}"


def test_the_cli_has_a_flag_for_exactly_the_settings_marked_with_one():
    from lrrl.train_cli import build_parser

    parser = build_parser()
    group = next(g for g in parser._action_groups if g.title.startswith("environment"))
    dests = {a.dest for a in group._group_actions}
    assert dests == set(flag_settings())
    for action in group._group_actions:
        f = settings_fields()[action.dest]
        assert action.help == f.metadata["help"]
        assert action.option_strings[0] == "--" + action.dest.replace("_", "-")
        if f.metadata["flag"] == "choice":
            assert tuple(action.choices) == f.metadata["choices"]
    # no env setting hides among the other groups' flags
    others = {a.dest for g in parser._action_groups if g is not group for a in g._group_actions}
    assert not (others & set(settings_fields())) - {"reward_scale"}  # the actor-critic's own reward_scale


def test_flags_reach_the_env_settings():
    from lrrl.train_cli import build_parser, settings_from_args

    args = build_parser().parse_args(["--lr-min", "0.001", "--features", "lr,step_fraction",
                                      "--no-per-group", "--reward", "probe", "--probe-batch-size", "7"])
    env = settings_from_args(args).env_kwargs
    assert env["lr_min"] == 0.001 and env["features"] == ["lr", "step_fraction"]
    assert env["per_group"] is False and env["reward"] == "probe" and env["probe_batch_size"] == 7


def test_the_controller_keys_are_the_settings_marked_controller():
    from agents.checkpoint import CONTROLLER_ENV_KEYS, Controller

    assert set(CONTROLLER_ENV_KEYS) == set(controller_keys()) and set(CONTROLLER_ENV_KEYS) <= set(settings_fields())
    recorded = {**EnvConfig().flat(), "features": ["lr"], "seed": 3, "device": "cpu"}
    ctrl = Controller("c", "actor-critic", None, {"env_kwargs": recorded})
    assert set(ctrl.env_kwargs()) == set(controller_keys())
    assert set(ctrl.env_kwargs(include_reward=True)) == set(settings_fields())


def test_the_scheduler_takes_the_control_group():
    from agents.scheduler import _control_kwargs
    from envs.control import ControlState

    taken = set(_control_kwargs(EnvConfig().flat()))
    assert taken == {f.name for f in dataclasses.fields(ControlConfig)} - {"episode_length"}
    assert taken <= set(inspect.signature(ControlState).parameters)


def test_presets_name_only_settings():
    from lrrl.presets import PRESETS, get_preset

    for name in PRESETS:
        env = get_preset(name)["env"]
        assert set(env) <= set(settings_fields()), name
    with pytest.raises(TypeError, match="unexpected keyword"):
        EnvConfig.from_flat({"learning_rate_min": 1e-3})


def test_flat_keywords_go_through_one_adapter_and_specs_stay_json():
    flat = {"lr_min": 1e-3, "features": ["lr"], "reward": "probe", "optimizer": "momentum", "eval_every": 5}
    env = LearningRateEnv("regression2d", device="cpu", **flat)
    assert env.config == EnvConfig.from_flat(flat)
    assert env.config.control.features == ("lr",) and env.config.primary.optimizer == "momentum"
    base = EnvConfig.from_flat({"lr_min": 1e-3})
    assert LearningRateEnv("regression2d", base, device="cpu", lr_max=0.5).config == \
        EnvConfig.from_flat({"lr_min": 1e-3, "lr_max": 0.5})
    with pytest.raises(TypeError, match="lr_minimum"):
        LearningRateEnv("regression2d", device="cpu", lr_minimum=1e-3)
    made = gym.make("lrrl/LearningRate-Regression2D-v0", device="cpu", **flat)
    assert made.unwrapped.config == env.config
    json.loads(made.spec.to_json())


def test_the_env_constructor_takes_at_most_twelve_parameters():
    assert len(inspect.signature(LearningRateEnv.__init__).parameters) <= 12

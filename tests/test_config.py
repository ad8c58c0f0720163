"""lrrl.config: the typed settings, validated once; train_controller.py's flags map onto it."""
import json

import pytest

from agents.io import CheckpointError
from lrrl.config import (HELD_OUT_SEED_START, SELECTION_SEED, EvaluationSettings, TrainSettings,
                                held_out_seeds, parse_seeds)
from lrrl.presets import get_preset


def test_from_preset_takes_the_presets_values_and_overrides():
    s = TrainSettings.from_preset("digits-capped")
    preset = get_preset("digits-capped")
    assert s.agent == preset["algo"] and s.env_kwargs == preset["env"] and s.steps == preset["train"]["steps"]
    assert s.eval_seeds == [SELECTION_SEED] and s.task == "digits"
    s = TrainSettings.from_preset("actor-critic-relative", agent="td3", env={"reward": "same-batch", "lr_min": None},
                                  agent_overrides={"noise_std": 0.3, "learning_rate": 5e-4}, steps=40, num_envs=2)
    assert s.env_kwargs["reward"] == "same-batch" and s.env_kwargs["lr_min"] == get_preset("actor-critic-relative")["env"]["lr_min"]
    assert s.agent_kwargs["noise_std"] == 0.3 and s.agent_kwargs["learning_rate"] == 5e-4
    assert s.agent_kwargs["gradient_steps"] == 2  # as many gradient steps per transition as with one env
    assert s.steps == 40 and s.num_envs == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"agent": "td3", "agent_overrides": {"m_phi": 2}}, "--m-phi does not apply to --agent td3"),
    ({"agent": "policy-search", "agent_overrides": {"gamma": 0.5}}, "--gamma does not apply"),
    ({"agent": "actor-critic", "agent_overrides": {"population": 8}}, "--population does not apply"),
    ({"agent": "policy-search", "num_envs": 2, "workers": 2}, "either in --workers processes or in one --num-envs"),
    ({"agent": "td3", "workers": 2}, "--workers does not apply"),
    ({"task": "nope"}, "unknown task 'nope'"),
    ({"task": "digits,"}, None),  # an empty entry is dropped, not an error
    ({"agent": "ppo"}, "unknown agent"),
    ({"steps": 0}, "train.steps"),
    ({"env": {"lr_min": 2.0, "lr_max": 1.0}}, "lr_min must be < lr_max"),
])
def test_bad_settings_are_one_value_error_naming_the_flag(kwargs, message):
    if message is None:
        assert TrainSettings.from_preset(**kwargs).tasks == ["digits"]
        return
    with pytest.raises(ValueError, match=message):
        TrainSettings.from_preset(**kwargs)


def test_settings_json_round_trip_and_schema_errors():
    s = TrainSettings.from_preset("paper", task="regression2d", seed=3)
    record = s.to_json()
    assert set(record) == {"agent", "preset", "env_kwargs", "agent_kwargs", "train"}
    again = TrainSettings.from_json(json.loads(json.dumps(record)))
    assert again == s
    record["train"]["steps"] = "100"
    with pytest.raises(CheckpointError, match="train.steps"):
        TrainSettings.from_json(record, "run/settings.json")


def test_evaluation_settings_validate_once():
    st = EvaluationSettings(baselines=["lrfree,sgd"], seeds=[5, 5, 7]).validate()
    assert st.seeds == [5, 7] and st.baselines[-1] == "sgd" and "prodigy" in st.baselines and st.device == "cpu"
    for bad in ({"updates": 0}, {"jobs": 0}, {"batch": 0}, {"eval_every": True}, {"grid": "coarse"},
                {"divergence_factor": 1.0}, {"task": "imagenet"}, {"seeds": [2 ** 64]}, {"baselines": ["nope"]}):
        with pytest.raises(ValueError):
            EvaluationSettings(**bad).validate()
    assert parse_seeds("3") == held_out_seeds(3) == [HELD_OUT_SEED_START + i for i in range(3)]
    # ranges (inclusive, also inside a list) and counts from another start (train_controller.py --seeds)
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4] and parse_seeds("0-2,9,1") == [0, 1, 2, 9]
    assert parse_seeds("3", count_start=0) == [0, 1, 2] and parse_seeds("1000-1001") == [1000, 1001]
    for bad, message in (("4-2", "A <= B"), ("0-", "expected a count"), ("-3", "expected a count"),
                         ("0-100000000", "at most")):
        with pytest.raises(ValueError, match=message):
            parse_seeds(bad)


def test_paper_preset_actor_sets_the_rate_itself():
    """Issue 17: in the ``paper`` preset the actor's output is the learning rate the primary
    model is trained with (a = pi(s)), clipped to [lr_min, lr_max]; not a log-uniform map."""
    import torch

    from lrrl.training import _make_agent, make_training_env

    s = TrainSettings.from_preset("paper", env={"episode_length": 5}, task="regression2d", seed=0,
                                  collapse_termination=False, finite_horizon=False)
    env = make_training_env(s)
    agent, _ = _make_agent(s, env, None)
    obs, _ = env.reset(seed=0)
    for rate in (0.037, 0.5, 3.0, -1.0):
        with torch.no_grad():
            agent.actor.head.weight.zero_()
            agent.actor.head.bias.fill_(rate)
        action, _ = agent.predict(obs)
        obs, _, _, _, info = env.step(action)
        assert info["lr"] == pytest.approx(min(max(rate, 1e-5), 1.0), rel=1e-6)


@pytest.mark.parametrize("train", [{"task": "digits,suite-train"}, {"task": "suite-train", "num_envs": 2}])
def test_suite_training_alone_and_one_episode_at_a_time(train):
    with pytest.raises(ValueError, match="trains on the suite alone"):
        TrainSettings.from_preset("recommended", agent="td3", **train)

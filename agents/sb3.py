"""stable-baselines3 DDPG/TD3 on ``LearningRateEnv``: the factory, atomic saves and safe loading.

- :data:`SB3_HYPERPARAMS` and :func:`make_sb3_agent`: the one place the baselines' settings live.
- :func:`save_sb3_atomic` / :func:`load_sb3_safely`: write a DDPG/TD3 zip atomically, load one
  without unpickling anything (see :func:`load_sb3_safely`).

The callbacks every agent uses live in :mod:`agents.callbacks`.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import DDPG, TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from agents.io import CheckpointError, atomic_write_bytes, box_from_json, unpickling_refusal

ALGOS = {"ddpg": DDPG, "td3": TD3}

#: the name of ``noise_std`` in settings.json files written before version 0.3 (still read)
_OLD_NAMES = {"action_noise_std": "noise_std"}


def _current_names(kwargs: dict) -> dict:
    return {_OLD_NAMES.get(k, k): v for k, v in kwargs.items()}


#: Baseline hyperparameters for LearningRateEnv, in one place. ``make_sb3_agent(**overrides)``
#: and train_controller.py's flags change them per run.
SB3_HYPERPARAMS: dict[str, Any] = {
    # Same discount as the paper's agent (agents/actor_critic.py, presets.py): same objective.
    "gamma": 0.9,
    # Gaussian action noise, std in SB3's scaled [-1, 1] action units: the same exploration
    # as the actor-critic's noise_std. Reaching a bound is 10 sigma away from the centre.
    "noise_std": 0.1,
    # Adam step size of both networks; 1e-3 = torch's Adam default, as for the paper's agent.
    "learning_rate": 1e-3,
    # One 200-step episode of uniformly random learning rates first: the critic sees the whole
    # log-lr range (including divergence) before the actor starts to steer.
    "learning_starts": 200,
    # Larger than any budget we train for: nothing is forgotten. At 1-4 floats per state,
    # 1e5 transitions cost a few MB.
    "buffer_size": 100_000,
    # Minibatch of the off-policy update; 128 is plenty for a 1-d state, cheaper than SB3's 256.
    "batch_size": 128,
    # One gradient step per env step (SB3 default): the same update budget per step as the
    # paper's agent with m_phi = m_theta = 1.
    "train_freq": 1,
    "gradient_steps": 1,
    # Polyak rate of the target networks (SB3 default).
    "tau": 0.005,
    # Small MLPs: the state is a loss value (plus a few features); 64x64 is already far
    # larger than the paper's critic, and fast on CPU.
    "net_arch": [64, 64],
}


def make_sb3_agent(algo: str, env: gym.Env, seed: int | None = 0, device: str = "auto",
                   tensorboard_log: str | None = None, **overrides: Any):
    """A DDPG or TD3 model on ``env`` (wrapped in ``Monitor``) with :data:`SB3_HYPERPARAMS`.

    Args:
        algo: ``"ddpg"`` or ``"td3"``.
        env: a single gymnasium env (SB3 vectorises it), or an SB3 ``VecEnv`` such as
            :func:`agents.vec_env.make_sb3_vec_env` (N primary runs in one batched step).
        seed: seeds SB3 (networks, noise, env). device: ``auto``/``cpu``/``cuda``.
        overrides: keys of :data:`SB3_HYPERPARAMS` to change (unknown keys are an error).
    """
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {sorted(ALGOS)}, got {algo!r}")
    overrides = _current_names(overrides)
    unknown = set(overrides) - set(SB3_HYPERPARAMS)
    if unknown:
        raise ValueError(f"unknown SB3 hyperparameters {sorted(unknown)}; known: {sorted(SB3_HYPERPARAMS)}")
    hp = {**SB3_HYPERPARAMS, **overrides}
    if isinstance(env, VecEnv):
        if not isinstance(env, VecMonitor):
            env = VecMonitor(env)
    elif not is_wrapped(env, Monitor):
        env = Monitor(env)
    n = int(np.prod(env.action_space.shape))
    noise = None
    if hp["noise_std"] > 0:
        noise = NormalActionNoise(np.zeros(n), hp["noise_std"] * np.ones(n))
    return ALGOS[algo](
        "MlpPolicy", env, learning_rate=hp["learning_rate"], buffer_size=hp["buffer_size"],
        learning_starts=hp["learning_starts"], batch_size=hp["batch_size"], tau=hp["tau"],
        gamma=hp["gamma"], train_freq=hp["train_freq"], gradient_steps=hp["gradient_steps"],
        action_noise=noise, policy_kwargs={"net_arch": list(hp["net_arch"])},
        tensorboard_log=tensorboard_log, seed=seed, device=device, verbose=0)


def save_sb3_atomic(model, path: str | os.PathLike, resume: dict | None = None) -> None:
    """``model.save`` into memory, then an atomic write to ``path`` (SB3 writes in place).
    ``resume``: the state an exact resume needs (:mod:`agents.snapshot`), as one more member."""
    buffer = io.BytesIO()
    model.save(buffer)
    if resume is not None:
        import torch

        from agents.snapshot import SB3_MEMBER

        member = io.BytesIO()
        torch.save(resume, member)
        with zipfile.ZipFile(buffer, "a") as archive:
            archive.writestr(SB3_MEMBER, member.getvalue())
    atomic_write_bytes(path, buffer.getvalue())


def load_sb3_safely(path: str | os.PathLike, settings: dict, env: gym.Env | None = None,
                    device: str = "auto"):
    """Load a DDPG/TD3 zip written by train_controller.py without running code from it.

    SB3 stores some attributes (spaces, policy class, noise, schedules, ...) cloudpickled in the
    zip's ``data`` JSON; ``model.load`` would unpickle them. Here every such entry is replaced
    (SB3's ``custom_objects``) by an object rebuilt from ``settings`` (the run's settings.json:
    spaces and hyperparameters), or by ``None`` where SB3 rebuilds it itself, so cloudpickle is
    never called; the tensors are read by SB3 with ``weights_only=True``. Only ``path`` is
    read: nothing is searched for.

    Raises:
        CheckpointError: missing, truncated or corrupt zip, or settings that do not fit it.
    """
    path = Path(path)
    algo = settings.get("agent")
    if algo not in ALGOS:
        raise CheckpointError(f"settings name agent {algo!r}, not one of {sorted(ALGOS)}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist (or is not a file)")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupt "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} has a malformed 'data' entry")
    try:
        hp = {**SB3_HYPERPARAMS, **_current_names(settings.get("agent_kwargs", {}))}
        obs_space = box_from_json(settings["spaces"]["observation"])
        act_space = box_from_json(settings["spaces"]["action"])
        n = int(np.prod(act_space.shape))
        safe = {
            "policy_class": ALGOS[algo].policy_aliases["MlpPolicy"],
            # plain JSON in the zip (kept), unless something pickled it: then rebuilt
            "policy_kwargs": {"net_arch": list(hp["net_arch"]), **({"n_critics": 1} if algo == "ddpg" else {})},
            "observation_space": obs_space,
            "action_space": act_space,
            "action_noise": (NormalActionNoise(np.zeros(n), hp["noise_std"] * np.ones(n))
                             if hp["noise_std"] > 0 else None),
            "replay_buffer_class": ReplayBuffer,
            "train_freq": TrainFreq(int(hp["train_freq"]), TrainFrequencyUnit.STEP),
            "lr_schedule": None,  # rebuilt from learning_rate by _setup_model
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"settings.json beside {str(path)!r} lacks what is needed to load it "
                              f"safely ({type(exc).__name__}: {exc})") from None
    if not (isinstance(data.get("policy_kwargs"), dict) and ":serialized:" in data["policy_kwargs"]):
        del safe["policy_kwargs"]
    # everything else that SB3 would unpickle (last obs, episode buffers, ...) -> None
    for key, item in data.items():
        if isinstance(item, dict) and ":serialized:" in item and key not in safe:
            safe[key] = None
    try:
        return ALGOS[algo].load(path, env=env, device=device, custom_objects=safe)
    except CheckpointError:
        raise
    except Exception as exc:  # anything SB3 raises on a damaged archive or tensor file
        if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc):
            # torch refused a pickled object in the zip: our reason, never torch's advice to
            # load it with weights_only=False
            raise unpickling_refusal(exc, path) from None
        raise CheckpointError(f"checkpoint {str(path)!r} could not be loaded "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None

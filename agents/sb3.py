"""stable-baselines3 glue: DDPG/TD3 baselines on ``LearningRateEnv``, safe loading, callbacks.

- :data:`SB3_HYPERPARAMS` and :func:`make_sb3_agent`: the one place the baselines' settings live.
- :func:`load_sb3_safely`: load a DDPG/TD3 zip without unpickling anything (see below).
- Callbacks shared by every agent of ``train_controller.py`` (the paper's ``ActorCritic`` runs
  SB3 callbacks too): :class:`TqdmCallback`, :class:`EnvInfoCallback`, :class:`PeriodicCheckpoint`.
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3 import DDPG, TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.logger import TensorBoardOutputFormat
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from agents.checkpoint import CheckpointError, atomic_write_bytes, unpickling_refusal

ALGOS = {"ddpg": DDPG, "td3": TD3}

#: Baseline hyperparameters for LearningRateEnv, in one place. ``make_sb3_agent(**overrides)``
#: and train_controller.py's flags change them per run.
SB3_HYPERPARAMS: dict[str, Any] = {
    # Same discount as the paper's agent (agents/actor_critic.py, presets.py): same objective.
    "gamma": 0.9,
    # Gaussian action noise, std in SB3's scaled [-1, 1] action units: the same exploration
    # as the actor-critic's noise_std. Reaching a bound is 10 sigma away from the centre.
    "action_noise_std": 0.1,
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
    if hp["action_noise_std"] > 0:
        noise = NormalActionNoise(np.zeros(n), hp["action_noise_std"] * np.ones(n))
    return ALGOS[algo](
        "MlpPolicy", env, learning_rate=hp["learning_rate"], buffer_size=hp["buffer_size"],
        learning_starts=hp["learning_starts"], batch_size=hp["batch_size"], tau=hp["tau"],
        gamma=hp["gamma"], train_freq=hp["train_freq"], gradient_steps=hp["gradient_steps"],
        action_noise=noise, policy_kwargs={"net_arch": list(hp["net_arch"])},
        tensorboard_log=tensorboard_log, seed=seed, device=device, verbose=0)


def box_to_json(box: spaces.Box) -> dict:
    return {"low": box.low.tolist(), "high": box.high.tolist(), "dtype": str(box.dtype)}


def box_from_json(d: dict) -> spaces.Box:
    return spaces.Box(np.array(d["low"], dtype=d["dtype"]), np.array(d["high"], dtype=d["dtype"]),
                      dtype=d["dtype"])


def save_sb3_atomic(model, path: str | os.PathLike) -> None:
    """``model.save`` into memory, then an atomic write to ``path`` (SB3 writes in place)."""
    buffer = io.BytesIO()
    model.save(buffer)
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
        hp = {**SB3_HYPERPARAMS, **settings.get("agent_kwargs", {})}
        obs_space = box_from_json(settings["spaces"]["observation"])
        act_space = box_from_json(settings["spaces"]["action"])
        n = int(np.prod(act_space.shape))
        safe = {
            "policy_class": ALGOS[algo].policy_aliases["MlpPolicy"],
            # plain JSON in the zip (kept), unless something pickled it: then rebuilt
            "policy_kwargs": {"net_arch": list(hp["net_arch"]), **({"n_critics": 1} if algo == "ddpg" else {})},
            "observation_space": obs_space,
            "action_space": act_space,
            "action_noise": (NormalActionNoise(np.zeros(n), hp["action_noise_std"] * np.ones(n))
                             if hp["action_noise_std"] > 0 else None),
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


# --------------------------------------------------------------------------- callbacks
class TqdmCallback(BaseCallback):
    """A plain tqdm progress bar over env steps (SB3's own bar needs ``rich``)."""

    def __init__(self, total: int | None = None, initial: int = 0, desc: str = "training",
                 disable: bool | None = None) -> None:
        super().__init__()
        self.total, self.initial, self.desc, self.disable = total, initial, desc, disable
        self.bar = None

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        total = self.total if self.total is not None else \
            self.locals.get("total_timesteps", 0) + self.model.num_timesteps
        self.bar = tqdm(total=total, initial=self.model.num_timesteps, desc=self.desc, unit="step",
                        dynamic_ncols=True, disable=self.disable)

    def _on_step(self) -> bool:
        self.bar.update(self.model.num_timesteps - self.bar.n)
        info = self.locals.get("infos", [{}])[0]
        if self.n_calls % 50 == 0 and "lr" in info:
            self.bar.set_postfix(lr=f"{np.mean(info['lr']):.3g}", loss=f"{info.get('loss_after', float('nan')):.3g}",
                                 refresh=False)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


class EnvInfoCallback(BaseCallback):
    """Logs what the env reports, for any agent, in SB3's logger layout:

    - every step: ``env/lr`` (mean over groups), ``env/batch_loss`` (``f(w_t; x_i)``),
      ``env/loss_after``, dumped at the step (TensorBoard gets one point per step);
    - every episode: ``env/episode_train_loss`` / ``env/episode_test_loss`` when the env
      reports ``info["eval"]`` at the episode's end, and ``env/diverged``.

    Keeps ``self.summary``: mean lr over all steps, and the last finished episode's final
    batch loss, full-train-set loss (if evaluated), mean lr and divergence flag.
    """

    def __init__(self, log_every: int = 1) -> None:
        super().__init__()
        self.log_every = max(1, int(log_every))
        self.lr_sum, self.lr_steps = 0.0, 0
        self.episode_lrs: list[float] = []
        self.last_episode: dict | None = None
        self.episodes = 0

    def _on_step(self) -> bool:
        for info, done in zip(self.locals.get("infos", []), self.locals.get("dones", [])):
            if "lr" not in info:
                continue
            lr = float(np.mean(info["lr"]))
            self.lr_sum, self.lr_steps = self.lr_sum + lr, self.lr_steps + 1
            self.episode_lrs.append(lr)
            if self.num_timesteps % self.log_every == 0:
                self._log_step({"env/lr": lr,
                                "env/batch_loss": float(info.get("batch_loss", math.nan)),
                                "env/loss_after": float(info.get("loss_after", math.nan))})
            if done:
                evaluation = info.get("eval", {})
                self.last_episode = {
                    "steps": len(self.episode_lrs), "end_step": self.num_timesteps,
                    "final_batch_loss": float(info.get("loss_after", math.nan)),
                    "final_train_loss": evaluation.get("train_loss"),
                    "final_test_loss": evaluation.get("test_loss"),
                    "final_test_accuracy": evaluation.get("test_accuracy"),
                    "mean_lr": float(np.mean(self.episode_lrs)),
                    "diverged": bool(info.get("diverged", False)),
                }
                self.episodes += 1
                self.episode_lrs = []
                for key in ("train_loss", "test_loss"):
                    if key in evaluation:
                        self.logger.record(f"env/episode_{key}", float(evaluation[key]))
                self.logger.record("env/diverged", float(self.last_episode["diverged"]))
                self.logger.record("env/episode_mean_lr", self.last_episode["mean_lr"])
                self.logger.dump(self.num_timesteps)
        return True

    def _log_step(self, values: dict[str, float]) -> None:
        # SB3's TensorBoard format flushes the event file on every dump (~1.5 ms); per-step
        # scalars go straight to its SummaryWriter instead (same file, flushed by the writer).
        writers = [f.writer for f in self.logger.output_formats if isinstance(f, TensorBoardOutputFormat)]
        if writers and len(writers) == len(self.logger.output_formats):
            for key, value in values.items():
                writers[0].add_scalar(key, value, self.num_timesteps)
        else:
            for key, value in values.items():
                self.logger.record(key, value)
            self.logger.dump(self.num_timesteps)

    @property
    def mean_lr(self) -> float | None:
        return self.lr_sum / self.lr_steps if self.lr_steps else None


class PeriodicCheckpoint(BaseCallback):
    """Calls ``save_fn(model)`` every ``every`` env steps (0: never). ``save_fn`` must write
    atomically (``ActorCritic.save`` and :func:`save_sb3_atomic` do).

    The saved state is what an uninterrupted run would have at that step: the episode that this
    very step ends is counted (agents count it only after the callbacks ran), and the number of
    steps into an unfinished episode is recorded as ``model.interrupted_episode_steps``, so
    ``train_controller.py --resume`` counts the episode a kill cut short (a resumed run starts a
    fresh one) and its episode counter matches an uninterrupted run's."""

    def __init__(self, every: int, save_fn: Callable[[Any], None]) -> None:
        super().__init__()
        self.every, self.save_fn = int(every), save_fn
        self.episode_step = 0

    def _on_step(self) -> bool:
        ended = int(np.sum(self.locals.get("dones", [])))
        self.episode_step = 0 if ended else self.episode_step + 1
        # num_timesteps grows by num_envs per call with a vector env: save on crossing a multiple
        n_envs = int(getattr(self.model, "n_envs", 1) or 1)
        if self.every > 0 and self.num_timesteps // self.every > (self.num_timesteps - n_envs) // self.every:
            self.save(self.model, pending_episodes=ended)
        return True

    def save(self, model: Any, pending_episodes: int = 0) -> None:
        """Save ``model`` now (also for the final and the interrupted save)."""
        model._episode_num += pending_episodes
        model.interrupted_episode_steps = int(self.episode_step)
        try:
            self.save_fn(model)
        finally:
            model._episode_num -= pending_episodes

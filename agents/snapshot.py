"""Exact resume of the actor-critic and DDPG/TD3: checkpoints at episode boundaries.

kill -9 (or Ctrl-C) + ``train_controller.py --resume`` must continue a run exactly as an
uninterrupted run would have gone on: same counters, same controller, bit for bit. The design,
the simplest one that is exact (issue 27):

- **Only episode boundaries are checkpointed.** At the start of every training episode the state
  is copied in memory (:class:`EpisodeSnapshots`, a callback); a checkpoint that falls due
  mid-episode (periodic, Ctrl-C) writes the copy taken at the start of the episode under way, as
  the policy search writes its last generation boundary. The env then needs no mid-episode state
  (primary model, its optimizer, ``ControlState``), only what its next ``reset()`` reads: the
  primary trainer's seed, its ``w0`` draw count and its batch stream (generator state,
  permutation, position), recorded just before each reset by :class:`ResetRecorder` and put back
  by it at the resumed run's first reset (whatever seed that reset is given).
- **Everything random is restored**: python ``random``, numpy's and torch's global generators
  (SB3's replay sampling, action noise and TD3's target noise draw from them), the
  actor-critic's noise generator, SB3's action-space generator (its warm-up actions).
- **The agent's whole learning state**: networks, targets, optimizers, counters (the
  actor-critic's gradient window too), DDPG/TD3's replay buffer, and the checkpoint selection
  so far (``--select-best``).

Cost: a snapshot per episode is a copy of the agents' state dicts (small networks) and a few RNG
states; the replay buffer is not copied, only its position at the episode's start and the rows
the episode will overwrite if the buffer is full (at most one episode of rows). The replay buffer
is written into the checkpoint (up to ``buffer_size`` rows: a few MB at the defaults).

Limits: the final checkpoint of a run is its result (with ``--select-best``, the selected
policy, not the last), written as it is; resuming it with a larger ``--steps`` continues from it
(RNG and replay buffer restored) but is not an uninterrupted longer run. With ``--num-envs > 1``
(N episodes side by side, never at a common boundary) checkpoints are written as they are:
counters exact, the rest continues from the saved networks. The policy search has its own
generation-boundary checkpoints (:mod:`agents.policy_search`).

The extra state (:func:`capture_extras`) is stored as plain tensors, numbers and JSON strings
(read with ``weights_only=True``): under the key ``"resume"`` of an actor-critic ``.pt``, and as
the member :data:`SB3_MEMBER` of a DDPG/TD3 zip (which SB3's loader ignores).
"""
from __future__ import annotations

import copy
import io
import json
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from agents.io import CheckpointError, unpickling_refusal

FORMAT = "lrrl-resume/1"
#: the zip member of a DDPG/TD3 checkpoint holding the resume state (not ``.pth``: SB3 loads those)
SB3_MEMBER = "lrrl_resume.pt"
_BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
_AC_OBJECTS = ("actor", "critic", "critic2", "actor_target", "critic_target", "critic2_target", "obs_rms",
               "actor_optimizer", "critic_optimizer")


# --------------------------------------------------------------------------- random generators
def global_rng_state() -> dict:
    """python ``random``, numpy's global and torch's (CPU) global generator states."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": json.dumps([version, list(internal), gauss]),
             "numpy": json.dumps([kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # TD3's target noise on a GPU
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict) -> None:
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = json.loads(state["numpy"])
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _generator_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def _set_generator_state(rng: np.random.Generator, state: str) -> None:
    rng.bit_generator.state = json.loads(state)


# --------------------------------------------------------------------------- the env's next reset
def env_state(env: gym.Env) -> dict | None:
    """What the next ``reset()`` (without a seed) of ``env`` reads: per ``LearningRateEnv``, its
    trainer's seed, ``w0`` draw count and batch stream; the task index of a ``RoundRobinEnv``.
    ``None`` for an env of another kind (its resume is then not exact)."""
    from envs.learning_rate_env import LearningRateEnv
    from envs.multitask import RoundRobinEnv

    while isinstance(env, gym.Wrapper):  # Monitor, CollapseTermination, FiniteHorizon: no state across episodes
        env = env.env
    if isinstance(env, RoundRobinEnv):
        states = [env_state(e) for e in env.envs]
        return None if any(s is None for s in states) else {"index": int(env.index), "envs": states}
    if not isinstance(env, LearningRateEnv):
        return None
    t = env.trainer
    # (_perm is replaced by the trainer, never changed in place: a reference is a copy)
    return {"seeded": bool(env._seeded), "seed": int(t._seed), "w0_draws": int(t._w0_draws),
            "batch_gen": t._batch_gen.get_state(), "perm": t._perm, "pos": int(t._pos),
            "np_random": None if env._np_random is None else _generator_state(env._np_random)}


def set_env_state(env: gym.Env, state: dict) -> None:
    """Put back what :func:`env_state` recorded (the env must be built with the same settings)."""
    from envs.multitask import RoundRobinEnv

    while isinstance(env, gym.Wrapper):
        env = env.env
    if isinstance(env, RoundRobinEnv):
        env.index = int(state["index"])
        for sub, sub_state in zip(env.envs, state["envs"]):
            set_env_state(sub, sub_state)
        return
    if not state["seeded"]:  # not reset yet: the freshly built env is that state
        return
    t = env.trainer
    if t._seed != state["seed"]:
        t.seed(state["seed"])
    t._w0_draws = int(state["w0_draws"])
    t._batch_gen.set_state(state["batch_gen"])
    t._perm, t._pos = state["perm"].to(t.device), int(state["pos"])
    if state["np_random"] is not None:
        env.np_random = np.random.Generator(np.random.PCG64())
        _set_generator_state(env.np_random, state["np_random"])
    env._seeded = True


class ResetRecorder(gym.Wrapper):
    """Records :func:`env_state` just before every ``reset()`` (``before_reset``: the state the
    episode under way started from); ``restore(state)`` makes the next ``reset()`` start from
    ``state`` instead, ignoring the seed it is given (a resumed SB3 model re-seeds its env)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.before_reset: dict | None = None
        self._pending: dict | None = None

    def restore(self, state: dict | None) -> None:
        self._pending = state

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self._pending is not None:
            state, self._pending = self._pending, None
            set_env_state(self.env, state)
            if state.get("seeded", True):
                seed = None
        self.before_reset = env_state(self.env)
        return self.env.reset(seed=seed, options=options)


def find_recorder(model: Any) -> ResetRecorder | None:
    """The :class:`ResetRecorder` inside ``model``'s env (one env only), or ``None``."""
    env = model.get_env()
    while isinstance(env, VecEnvWrapper):
        env = env.venv
    if isinstance(env, VecEnv):
        if not isinstance(env, DummyVecEnv) or len(env.envs) != 1:
            return None
        env = env.envs[0]
    while isinstance(env, gym.Wrapper):
        if isinstance(env, ResetRecorder):
            return env
        env = env.env
    return None


# --------------------------------------------------------------------------- the agent's state
def _is_sb3(model: Any) -> bool:
    return isinstance(model, BaseAlgorithm)


def capture_model(model: Any) -> dict:
    """A copy of what the agent's own ``save`` writes: networks, optimizers, counters."""
    counters = {"num_timesteps": int(model.num_timesteps), "_episode_num": int(model._episode_num),
                "_n_updates": int(model._n_updates)}
    if _is_sb3(model):
        return {"params": copy.deepcopy(model.get_parameters()), "counters": counters}
    objects = {name: getattr(model, name, None) for name in _AC_OBJECTS}
    return {"params": {name: copy.deepcopy(obj.state_dict()) for name, obj in objects.items() if obj is not None},
            "noise": model.noise_generator.get_state(), "counters": counters}


def apply_model(model: Any, captured: dict) -> None:
    if _is_sb3(model):
        model.set_parameters(captured["params"], exact_match=True)
    else:
        for name, state in captured["params"].items():
            getattr(model, name).load_state_dict(state)
        model.noise_generator.set_state(captured["noise"])
    for name, value in captured["counters"].items():
        setattr(model, name, value)


def _ac_grads(model: Any) -> dict:
    """The actor-critic's gradient window (``m_phi``/``m_theta`` > 1 accumulate across steps)."""
    modules = {"actor": model.actor, "critic": model.critic, "critic2": model.critic2}
    return {"critic_steps": int(model._critic_steps), "actor_steps": int(model._actor_steps),
            "grads": {name: [None if p.grad is None else p.grad.detach().clone() for p in m.parameters()]
                      for name, m in modules.items() if m is not None}}


def _set_ac_grads(model: Any, state: dict) -> None:
    model._critic_steps, model._actor_steps = int(state["critic_steps"]), int(state["actor_steps"])
    for name, grads in state["grads"].items():
        for p, g in zip(getattr(model, name).parameters(), grads):
            p.grad = None if g is None else g.to(p.device)


def _buffer_mark(buffer: Any, horizon: int) -> dict:
    """The replay buffer at an episode's start: its position, and the rows the next ``horizon``
    additions would overwrite (copied only if they hold data)."""
    mark = {"pos": int(buffer.pos), "full": bool(buffer.full), "rows": None}
    if buffer.full or buffer.pos + horizon > buffer.buffer_size:
        idx = (buffer.pos + np.arange(min(horizon, buffer.buffer_size))) % buffer.buffer_size
        mark["rows"] = (idx, {f: getattr(buffer, f)[idx].copy() for f in _BUFFER_FIELDS
                              if getattr(buffer, f, None) is not None})
    return mark


def _buffer_payload(buffer: Any, mark: dict | None) -> dict:
    """The replay buffer as it was at ``mark`` (``None``: as it is), as tensors."""
    mark = mark or {"pos": int(buffer.pos), "full": bool(buffer.full), "rows": None}
    n = buffer.buffer_size if mark["full"] else mark["pos"]
    arrays = {f: getattr(buffer, f)[:n].copy() for f in _BUFFER_FIELDS if getattr(buffer, f, None) is not None}
    if mark["rows"] is not None:
        idx, old = mark["rows"]
        keep = idx < n
        for f, rows in old.items():
            arrays[f][idx[keep]] = rows[keep]
    return {"pos": mark["pos"], "full": mark["full"], "arrays": {f: torch.from_numpy(a) for f, a in arrays.items()}}


def _set_buffer(buffer: Any, state: dict) -> None:
    for f, tensor in state["arrays"].items():
        target = getattr(buffer, f, None)
        a = tensor.numpy()
        if target is None or a.shape[1:] != target.shape[1:] or a.shape[0] > target.shape[0]:
            raise CheckpointError(f"the checkpoint's replay buffer ({f} {tuple(a.shape)}) does not fit "
                                  f"this run's (buffer_size {buffer.buffer_size})")
        target[:a.shape[0]] = a
    buffer.pos, buffer.full = int(state["pos"]), bool(state["full"])


def _horizon(recorder: ResetRecorder | None) -> int:
    """Env steps an episode takes at most (the rows of the replay buffer one episode writes)."""
    from envs.learning_rate_env import LearningRateEnv

    env = recorder.unwrapped if recorder is not None else None
    envs = getattr(env, "envs", [env])
    steps = [e.unwrapped.max_episode_steps for e in envs if isinstance(getattr(e, "unwrapped", None), LearningRateEnv)]
    return max(steps) if steps else 0


def capture_extras(model: Any, recorder: ResetRecorder | None, selector: Any = None,
                   env: dict | None = None, buffer_mark: dict | None = None) -> dict:
    """The state a checkpoint needs besides what the agent's ``save`` writes (see the module)."""
    extras: dict[str, Any] = {"format": FORMAT, "rng": global_rng_state(), "env": env, "selection": None}
    if selector is not None and selector.best_parameters is not None:
        extras["selection"] = {"best_return": selector.best_return, "best_timestep": selector.best_timestep,
                               "best_parameters": selector.best_parameters}
    if _is_sb3(model):
        extras["action_space_rng"] = _generator_state(model.action_space.np_random)
        extras["buffer"] = buffer_mark if buffer_mark is not None else _buffer_mark(model.replay_buffer, 0)
    else:
        extras["grads"] = _ac_grads(model)
    return extras


def extras_payload(extras: dict, model: Any) -> dict:
    """``extras`` as written into a checkpoint (the replay buffer rolled back to its mark)."""
    payload = dict(extras)
    if "buffer" in payload:
        payload["buffer"] = _buffer_payload(model.replay_buffer, payload["buffer"])
    return payload


# --------------------------------------------------------------------------- reading and restoring
def read_extras(path: str | Path) -> dict | None:
    """The resume state of a checkpoint (``None`` if it has none: an older or final-only file)."""
    from agents.io import safe_torch_load

    path = Path(path)
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                if SB3_MEMBER not in archive.namelist():
                    return None
                data = archive.read(SB3_MEMBER)
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupt ({exc})") from None
        try:
            extras = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a refused or damaged member
            if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc):
                raise unpickling_refusal(exc, path) from None  # never torch's advice to unpickle it
            raise CheckpointError(f"checkpoint {str(path)!r}: its resume state cannot be read "
                                  f"({type(exc).__name__}: {str(exc)[:200]})") from None
    else:
        payload = safe_torch_load(path, map_location="cpu")
        extras = payload.get("resume") if isinstance(payload, dict) else None
    if extras is None:
        return None
    if not isinstance(extras, dict) or extras.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r} has a resume state of an unknown format")
    return extras


def restore(model: Any, extras: dict | None, recorder: ResetRecorder | None, selector: Any = None) -> None:
    """Put ``extras`` back just before ``model.learn`` continues a run: the random generators,
    the gradient window or replay buffer, the env's next reset and the selection so far."""
    if extras is None:
        return
    try:
        if _is_sb3(model):
            _set_buffer(model.replay_buffer, extras["buffer"])
            _set_generator_state(model.action_space.np_random, extras["action_space_rng"])
        else:
            _set_ac_grads(model, extras["grads"])
        if recorder is not None and extras["env"] is not None:
            recorder.restore(extras["env"])
        if selector is not None and extras["selection"] is not None:
            selector.resumed = extras["selection"]
        set_global_rng_state(extras["rng"])  # last: nothing above draws from them
    except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"the checkpoint's resume state is inconsistent "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None


# --------------------------------------------------------------------------- the callback
class EpisodeSnapshots(BaseCallback):
    """Copies the state at every episode boundary (the actor-critic: at the step that ends an
    episode, before the env's reset; DDPG/TD3: at the rollout that starts the next one, once the
    last transition is stored and trained on) and writes checkpoints through :meth:`save`.

    ``write(model, resume=extras)``: the agent's atomic save with the resume state. Run this
    callback after :class:`~agents.callbacks.SelectBestCallback` and before
    :class:`~agents.callbacks.PeriodicCheckpoint`, whose ``save_fn`` is :meth:`save`."""

    def __init__(self, write: Callable[..., None], recorder: ResetRecorder | None, selector: Any = None) -> None:
        super().__init__()
        self.write, self.recorder, self.selector = write, recorder, selector
        self.snapshot: dict | None = None
        self.training = False
        self.saved_timesteps: int | None = None
        self._written: dict | None = None
        self._ended = True

    def take(self, pending_episodes: int = 0, env: dict | None = None) -> None:
        model = self.model
        captured = capture_model(model)
        captured["counters"]["_episode_num"] += pending_episodes
        if env is None and self.recorder is not None:
            env = self.recorder.before_reset
        mark = _buffer_mark(model.replay_buffer, _horizon(self.recorder)) if _is_sb3(model) else None
        self.snapshot = {"model": captured, "extras": capture_extras(model, self.recorder, self.selector, env, mark)}

    def _on_training_start(self) -> None:
        self.training, self._ended = True, False
        self.take()

    def _on_step(self) -> bool:
        self._ended = bool(np.any(self.locals.get("dones", [])))
        if self._ended and not _is_sb3(self.model):  # the env resets after the callbacks
            self.take(pending_episodes=1, env=env_state(self.recorder.env) if self.recorder else None)
        return True

    def _on_rollout_start(self) -> None:
        if self._ended and _is_sb3(self.model) and self.num_timesteps > 0:
            self.take()

    def _on_training_end(self) -> None:
        self.training = False

    def save(self, model: Any) -> None:
        """During training: write the last episode boundary (once); after it: the model as it is."""
        if not self.training or self.snapshot is None:
            self.write(model, resume=extras_payload(capture_extras(model, None, self.selector), model))
            self.saved_timesteps = int(model.num_timesteps)
            return
        snap = self.snapshot
        if snap is self._written:
            return
        live = capture_model(model)
        live_steps = getattr(model, "interrupted_episode_steps", 0)
        try:
            apply_model(model, snap["model"])
            model.interrupted_episode_steps = 0
            self.write(model, resume=extras_payload(snap["extras"], model))
        finally:
            apply_model(model, live)
            model.interrupted_episode_steps = live_steps
        self._written = snap
        self.saved_timesteps = int(snap["model"]["counters"]["num_timesteps"])

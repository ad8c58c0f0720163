"""The registry of agent types: one :class:`AgentType` per agent, everything that differs between them.

An entry says how an agent is built on an env, saved, loaded (to train on, and as a trained
controller), which file of a run directory holds it, which of its keyword arguments a
``train_controller.py`` flag may set, and its keyword arguments from a preset. The settings
schema, the checkpoint reader (:func:`agents.checkpoint.load_controller`), the training library
(:mod:`lrrl.training`, :mod:`lrrl.config`) and ``--agent`` read this table; nothing else names
an agent. This module imports no torch: the agents' own modules are imported when an entry is
used (so that a command line's ``--help`` stays fast).

A new agent is a module (its class, an :class:`AgentType`) and one line in :data:`AGENT_TYPES`.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any, Callable


def _attribute(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class AgentType:
    """One agent type.

    Attributes:
        name: its name (``--agent NAME``, ``settings.json``'s ``agent``).
        model_class: ``"module:Class"`` of a model with SB3's ``learn``/``predict``, a
            ``cls(env, **kwargs, seed=, device=)`` constructor, ``model.save(path)`` (atomic) and
            ``cls.load(path, env=None, device=...)``; ``None`` when :attr:`build`/:attr:`load`
            say otherwise (the SB3 agents).
        checkpoint: the checkpoint's file name in a run directory.
        flag_keys: the keyword arguments a ``train_controller.py`` flag may set.
        preset_kwargs: ``(preset, num_envs) -> keyword arguments`` of the agent from a preset.
        build / load / saver: override the model class's constructor, ``load`` and ``save``.
        episodic: it trains in whole generations of episodes (a policy search), which run side
            by side in ``workers`` processes built by an ``env_factory``, or in one vector env.
    """

    name: str
    checkpoint: str
    flag_keys: tuple[str, ...]
    preset_kwargs: Callable[[dict, int], dict]
    model_class: str | None = None
    build: Callable | None = None
    load: Callable | None = None
    saver: Callable | None = None
    episodic: bool = False

    def make(self, env, kwargs: dict, seed: int, device: str, **extra: Any):
        """A fresh model on ``env``."""
        if self.build is not None:
            return self.build(self.name, env, seed=seed, device=device, **kwargs)
        return _attribute(self.model_class)(env, **kwargs, seed=seed, device=device, **extra)

    def restore(self, path, settings: dict | None = None, env=None, device: str = "cpu", **extra: Any):
        """The model saved at ``path`` (``settings``: the run's ``settings.json``), on ``env`` to
        train on, or without one as a trained controller."""
        if self.load is not None:
            return self.load(path, settings, env=env, device=device)
        return _attribute(self.model_class).load(path, env=env, device=device, **extra)

    def save_function(self, model) -> Callable[[Any], None]:
        """``save(path)`` for ``model`` (atomic: a crash never leaves half a checkpoint)."""
        return functools.partial(self.saver, model) if self.saver is not None else model.save


# --------------------------------------------------------------------------- the agents
def _shared(preset: dict) -> dict:
    """The actor-critic's keyword arguments of a preset (gamma and noise_std shared with SB3)."""
    return dict(preset["agent"])


def _policy_search_kwargs(preset: dict, num_envs: int) -> dict:
    return dict(preset.get("policy_search", {}))


def _sb3_kwargs(preset: dict, num_envs: int) -> dict:
    hyper = _attribute("agents.sb3:SB3_HYPERPARAMS")
    kwargs = {**hyper, **preset.get("sb3", {}), "gamma": preset["agent"]["gamma"],
              "noise_std": preset["agent"]["noise_std"]}
    # SB3 counts one train_freq step per vector step (num_envs transitions): as many gradient
    # steps per transition as with one env
    kwargs["gradient_steps"] = int(kwargs["gradient_steps"]) * num_envs
    return kwargs


def _sb3_build(name, env, seed, device, **kwargs):
    return _attribute("agents.sb3:make_sb3_agent")(name, env, seed=seed, device=device, **kwargs)


def _sb3_load(path, settings, env=None, device="cpu"):
    return _attribute("agents.sb3:load_sb3_safely")(path, settings, env=env, device=device)


def _sb3_save(model, path, resume: dict | None = None):
    _attribute("agents.sb3:save_sb3_atomic")(model, path, resume=resume)


ACTOR_CRITIC_KEYS = ("gamma", "noise_std", "m_phi", "m_theta", "actor_lr", "critic_lr", "separate_sample",
                     "target_tau", "normalize_obs", "reward_scale", "twin_critics", "actor_output")
SB3_KEYS = ("gamma", "noise_std", "learning_rate", "learning_starts", "batch_size", "buffer_size")
_SB3 = dict(checkpoint="controller.zip", flag_keys=SB3_KEYS, preset_kwargs=_sb3_kwargs, build=_sb3_build,
            load=_sb3_load, saver=_sb3_save)

#: every agent type, by name: one line each
AGENT_TYPES: dict[str, AgentType] = {a.name: a for a in (
    AgentType("actor-critic", "controller.pt", ACTOR_CRITIC_KEYS, lambda p, n: _shared(p),
              model_class="agents.actor_critic:ActorCritic"),
    AgentType("policy-search", "controller.pt", ("population", "elite_fraction", "init_std", "episodes_per_candidate"),
              _policy_search_kwargs, model_class="agents.policy_search:PolicySearch",
              episodic=True),
    AgentType("ddpg", **_SB3),
    AgentType("td3", **_SB3),
)}


def agent_type(name: str) -> AgentType:
    """The registered agent type ``name``, or ``ValueError`` listing them."""
    if name not in AGENT_TYPES:
        raise ValueError(f"unknown agent {name!r}; choose from {', '.join(AGENT_TYPES)}")
    return AGENT_TYPES[name]

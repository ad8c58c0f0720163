"""The one schema of a run's ``settings.json``, checked in one place.

Every reader of a run directory (``agents.checkpoint.read_settings``, and so
:func:`~agents.checkpoint.load_controller`, ``train_controller.py --resume``, ``evaluate.py``
and :class:`~agents.scheduler.ControllerScheduler`) goes through :func:`parse_settings`, so a
malformed file is one :class:`~agents.io.CheckpointError` that names the file and the
field, never a ``KeyError``/``TypeError``/``RecursionError`` traceback later on.

A settings file is data from whoever made the run directory: nothing in it is ever imported or
called. In particular a user task ``"package.module:function"`` recorded under ``train.task`` is
only a name here; ``train_controller.py --resume`` imports it only when the same name is given
again on the command line (:func:`user_tasks`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


#: agent name -> checkpoint file name (kept in sync with agents.checkpoint.CHECKPOINT_NAMES)
AGENTS = ("actor-critic", "policy-search", "ddpg", "td3")
#: a settings.json is a few kB; anything far larger is not one
MAX_BYTES = 1 << 20
#: deepest nesting a settings.json needs is 4 (spaces.observation.low[...]); allow some slack
MAX_DEPTH = 32

_INT = "an integer"
_NUM = "a number"
_STR = "a string"
_BOOL = "true or false"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# field -> (check, description); a missing optional field is fine, a present one must pass
_TRAIN_FIELDS: dict[str, tuple[Any, str, bool]] = {
    # name: (predicate, what it must be, required)
    "task": (lambda v: isinstance(v, str) and v.strip() != "" and all(t.strip() for t in v.split(",")),
             "a task name or a comma-separated list of task names", True),
    "steps": (lambda v: _is_int(v) and v >= 1, "an integer >= 1", True),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2 ** 63, "an integer in [0, 2**63)", True),
    "device": (lambda v: isinstance(v, str), _STR, False),
    "data_root": (lambda v: v is None or isinstance(v, str), "a string or null", False),
    "checkpoint_every": (lambda v: _is_int(v) and v >= 0, "an integer >= 0", False),
    "select_best": (lambda v: _is_int(v) and v >= 0, "an integer >= 0", False),
    "eval_seeds": (lambda v: isinstance(v, list) and len(v) >= 1 and all(_is_int(s) and 0 <= s < 2 ** 63 for s in v),
                   "a non-empty list of integers >= 0", False),
    "collapse_termination": (lambda v: isinstance(v, bool), _BOOL, False),
    "finite_horizon": (lambda v: isinstance(v, bool), _BOOL, False),
    "workers": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1 or null", False),
    "num_envs": (lambda v: _is_int(v) and v >= 1, "an integer >= 1", False),
}

_ENV_FIELDS: dict[str, tuple[Any, str]] = {
    "episode_length": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "updates_per_step": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "relative_every": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "validation_batch_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "probe_batch_size": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1 or null"),
    "validation_size": (lambda v: v is None or (_is_int(v) and v >= 0), "an integer >= 0 or null"),
    "lr_min": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "lr_max": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "initial_lr": (lambda v: v is None or (_is_num(v) and v > 0), "a number > 0 or null"),
    "relative_factor": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "step_cap_min": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "step_cap_max": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "obs_max": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "divergence_factor": (lambda v: _is_num(v) and v > 1, "a number > 1"),
    "divergence_penalty": (_is_num, _NUM),
    "optimizer": (lambda v: isinstance(v, str) and ":" not in v, "an optimizer name (no 'module:')"),
    "optimizer_kwargs": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "action": (lambda v: isinstance(v, str), _STR),
    "reward": (lambda v: isinstance(v, str), _STR),
    "reward_transform": (lambda v: isinstance(v, str), _STR),
    "features": (lambda v: isinstance(v, list) and all(isinstance(f, str) for f in v), "a list of strings"),
    "per_group": (lambda v: isinstance(v, bool), _BOOL),
    "log_observations": (lambda v: isinstance(v, bool), _BOOL),
    "fresh_w0": (lambda v: isinstance(v, bool), _BOOL),
    "safety_net": (lambda v: isinstance(v, bool), _BOOL),
    "relative_loss": (lambda v: isinstance(v, bool), _BOOL),
    "task": (lambda v: False, "absent: the task is recorded under train.task"),
}


def _error(path: Path | str, message: str):
    from agents.io import CheckpointError  # (lazily: reading a schema needs no torch)

    return CheckpointError(f"{str(path)!r}: {message}")


def _depth_ok(obj: Any, limit: int) -> bool:
    """Whether ``obj`` nests at most ``limit`` containers deep (iterative: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return True


def _text_depth(text: str, limit: int) -> bool:
    """Whether the brackets of JSON ``text`` nest at most ``limit`` deep, strings skipped.
    Run before ``json.loads``, so a 100,000-deep file never reaches the recursive decoder."""
    depth, in_string, escape = 0, False, False
    for ch in text:
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def parse_settings(text: str, path: Path | str = "settings.json") -> dict:
    """JSON ``text`` of a settings file -> the validated dict (:func:`validate_settings`).

    Raises:
        CheckpointError: not JSON, too large, nested too deep, or not matching the schema; the
            message names ``path`` and the offending field.
    """
    if len(text) > MAX_BYTES:
        raise _error(path, f"is {len(text)} bytes, far larger than a settings file (limit {MAX_BYTES})")
    if not _text_depth(text, MAX_DEPTH):
        raise _error(path, f"is nested more than {MAX_DEPTH} levels deep: not a settings file")
    try:
        settings = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise _error(path, f"is not valid JSON ({exc})") from None
    return validate_settings(settings, path)


def validate_settings(settings: Any, path: Path | str = "settings.json") -> dict:
    """Check a settings dict against the schema; return it unchanged.

    Required: ``agent`` (one of :data:`AGENTS`), ``env_kwargs`` (an object whose known keys have
    the right types; ``episode_length`` required), ``agent_kwargs`` (an object) and ``train``
    (an object with ``task``, ``steps`` and ``seed``). Optional: ``preset`` (a string) and
    ``spaces`` (an object with ``observation`` and ``action`` boxes).

    Raises:
        CheckpointError: naming ``path`` and the first offending field.
    """
    if not _depth_ok(settings, MAX_DEPTH):
        raise _error(path, f"is nested more than {MAX_DEPTH} levels deep: not a settings file")
    if not isinstance(settings, dict):
        raise _error(path, f"must hold a JSON object, not {type(settings).__name__}")
    agent = settings.get("agent")
    if agent not in AGENTS:
        raise _error(path, f"field 'agent' must be one of {list(AGENTS)}, got {_show(agent)}")
    if "preset" in settings and not isinstance(settings["preset"], str):
        raise _error(path, f"field 'preset' must be a string, got {_show(settings['preset'])}")
    for name in ("env_kwargs", "agent_kwargs", "train"):
        if name not in settings:
            raise _error(path, f"field {name!r} is missing (a run directory written by "
                               f"train_controller.py records agent, env_kwargs, agent_kwargs, train)")
        if not isinstance(settings[name], dict):
            raise _error(path, f"field {name!r} must be an object, got {type(settings[name]).__name__}")
    env = settings["env_kwargs"]
    if "episode_length" not in env:
        raise _error(path, "field 'env_kwargs.episode_length' is missing")
    for key, value in env.items():
        if key in _ENV_FIELDS:
            check, what = _ENV_FIELDS[key]
            if not check(value):
                raise _error(path, f"field 'env_kwargs.{key}' must be {what}, got {_show(value)}")
    if _is_num(env.get("lr_min")) and _is_num(env.get("lr_max")) and not env["lr_min"] < env["lr_max"]:
        raise _error(path, "fields 'env_kwargs.lr_min' and 'env_kwargs.lr_max': lr_min must be < lr_max")
    train = settings["train"]
    for key, (check, what, required) in _TRAIN_FIELDS.items():
        if key not in train:
            if required:
                raise _error(path, f"field 'train.{key}' is missing")
            continue
        if not check(train[key]):
            raise _error(path, f"field 'train.{key}' must be {what}, got {_show(train[key])}")
    if "spaces" in settings:
        spaces = settings["spaces"]
        if not isinstance(spaces, dict):
            raise _error(path, f"field 'spaces' must be an object, got {type(spaces).__name__}")
        for key in ("observation", "action"):
            box = spaces.get(key)
            if not (isinstance(box, dict) and isinstance(box.get("low"), list) and isinstance(box.get("high"), list)
                    and isinstance(box.get("dtype"), str)):
                raise _error(path, f"field 'spaces.{key}' must be an object with 'low', 'high' (lists) "
                                   f"and 'dtype'")
    return settings


def user_tasks(settings: dict) -> list[str]:
    """The user tasks (``"package.module:function"``) a run's ``train.task`` names."""
    return [t.strip() for t in settings["train"]["task"].split(",") if ":" in t]


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    if isinstance(value, (dict, list)):
        text = type(value).__name__ + " " + text
    return text if len(text) <= 60 else text[:57] + "..."

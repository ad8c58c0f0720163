"""The environment side: tasks, primary training, ``LearningRateEnv`` and its registration.

Modules: :mod:`envs.tasks` (data, model, loss), :mod:`envs.primary` (primary training),
:mod:`envs.control` (observation and action -> rate), :mod:`envs.rewards` (reward modes and
transforms), :mod:`envs.step_core` (reset and step of N runs, written once),
:mod:`envs.learning_rate_env` (its N = 1 view), :mod:`envs.vector_env` (its N-run view),
:mod:`envs.multitask` (:class:`RoundRobinEnv`, episodes cycling through several tasks).

Importing this package registers the environments with gymnasium, each under the ``lrrl/``
namespace and, as an alias, without it:

=======================================  ==============
id                                       task
=======================================  ==============
``lrrl/LearningRate-v0``                 ``digits``
``lrrl/LearningRate-MNIST-v0``           ``mnist``
``lrrl/LearningRate-FashionMNIST-v0``    ``fashion-mnist``
``lrrl/LearningRate-CIFAR10-v0``         ``cifar10``
``lrrl/LearningRate-Regression2D-v0``    ``regression2d``
=======================================  ==============

In a fresh interpreter ``gymnasium.make("lrrl:lrrl/LearningRate-v0")`` imports the ``lrrl``
package, which loads this one even where a local ``envs/`` folder comes first on ``sys.path``
(common in RL repositories; then ``"envs:LearningRate-v0"`` would import that folder instead).
``gymnasium.make("envs:LearningRate-v0")`` and the short ids work as before.

The task suite (:mod:`envs.suite`, :data:`SUITE_ENV_IDS`) registers, also under ``lrrl/``,
``LearningRate-Suite-v0`` (a training-family instance per episode), ``LearningRate-Suite-Test-v0``
(scoring instances of the test families) and one id per family, ``LearningRate-Suite-<Family>-v0``
(e.g. ``LearningRate-Suite-GruText-v0``); their keyword arguments go to :class:`envs.suite.SuiteEnv`.

Keyword arguments of ``gymnasium.make`` go to :class:`LearningRateEnv`;
``gymnasium.make_vec(id, num_envs=N, ...)`` returns :class:`LearningRateVectorEnv` (N primary
runs in one batched step; ``vectorization_mode="sync"``/``"async"`` give gymnasium's wrappers
of single envs instead). The env truncates
its own episodes after ``episode_length`` steps, so no ``max_episode_steps`` is registered;
passing one to ``gymnasium.make`` adds gymnasium's ``TimeLimit`` as usual.
"""
import gymnasium

from envs import fork_safety
from envs._version import __version__
from envs.control import ControlState
from envs.learning_rate_env import ACTIONS, FEATURES, REWARDS, LearningRateEnv
from envs.multitask import RoundRobinEnv
from envs.primary import OPTIMIZERS, PrimaryTrainer, build_optimizer, resolve_device
from envs.rewards import REWARD_PLANS, TRANSFORMS, RewardPlan, RewardTransform
from envs.vector_env import LearningRateVectorEnv
from envs.tasks import OFFLINE_TASKS, TASKS, DatasetUnavailableError, Task, make_task
from envs.suite import FAMILIES, SUITE_ENV_IDS, SuiteEnv

# forked vector-env workers must not hang in torch's thread pool (see envs/fork_safety.py)
fork_safety.install()

#: the gymnasium namespace of every id (``lrrl/LearningRate-v0``): a name a local folder cannot take
NAMESPACE = "lrrl"
#: id without the namespace -> task (each id is registered as ``lrrl/ID`` and, an alias, as ``ID``)
ENV_IDS = {
    "LearningRate-v0": "digits",
    "LearningRate-MNIST-v0": "mnist",
    "LearningRate-FashionMNIST-v0": "fashion-mnist",
    "LearningRate-CIFAR10-v0": "cifar10",
    "LearningRate-Regression2D-v0": "regression2d",
}


def _register(env_id: str, **spec) -> None:
    """Register ``env_id`` as ``lrrl/env_id`` and, an alias, as ``env_id`` (once per process)."""
    for name in (f"{NAMESPACE}/{env_id}", env_id):
        if name not in gymnasium.registry:
            gymnasium.register(id=name, **spec)


for _env_id, _task in ENV_IDS.items():
    _register(_env_id, entry_point="envs.learning_rate_env:LearningRateEnv",
              vector_entry_point="envs.vector_env:LearningRateVectorEnv", kwargs={"task": _task})

# the task suite: the train split, the test split, one id per family (envs.suite). Its envs draw a
# new task per episode, so make_vec gives gymnasium's sync/async wrappers (no batched entry point).
for _env_id, _kwargs in SUITE_ENV_IDS.items():
    _register(_env_id, entry_point="envs.suite:SuiteEnv", kwargs=_kwargs)

__all__ = ["__version__", "LearningRateEnv", "LearningRateVectorEnv", "RoundRobinEnv", "ControlState", "PrimaryTrainer", "Task", "make_task", "build_optimizer",
           "resolve_device", "DatasetUnavailableError", "TASKS", "OFFLINE_TASKS", "OPTIMIZERS",
           "FEATURES", "REWARDS", "ACTIONS", "ENV_IDS", "NAMESPACE", "SUITE_ENV_IDS", "SuiteEnv", "FAMILIES",
           "RewardPlan", "RewardTransform", "REWARD_PLANS",
           "TRANSFORMS"]

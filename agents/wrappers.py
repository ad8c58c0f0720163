"""Training-time gymnasium wrappers for ``LearningRateEnv`` (they change rewards/termination only,
never the primary model's trajectory, so evaluation needs none of them).

Each is an :class:`EpisodeRule` (:class:`CollapseRule`, :class:`FiniteHorizonRule`), written
once: :class:`RuleWrapper` applies it to a single env, :class:`agents.vec_env.SB3VecEnv` to each
sub-env of a vector env."""
from __future__ import annotations

import gymnasium as gym


class EpisodeRule:
    """A training-time change of an episode's rewards and ends, written once for a single env
    (:class:`RuleWrapper`) and for each sub-env of a vector env (:class:`agents.vec_env.SB3VecEnv`)."""

    def start(self, info: dict) -> None:
        """A new episode started, with reset info ``info``."""

    def apply(self, reward: float, terminated: bool, truncated: bool, info: dict):
        """One step's ``(reward, terminated, truncated, info)`` as the agent sees it."""
        return reward, terminated, truncated, info


class RuleWrapper(gym.Wrapper):
    """A single env with an :class:`EpisodeRule` applied to each step."""

    def __init__(self, env: gym.Env, rule: EpisodeRule) -> None:
        super().__init__(env)
        self.rule = rule

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.rule.start(info)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return (obs, *self.rule.apply(reward, terminated, truncated, info))


class CollapseRule(EpisodeRule):
    """The rule of :class:`CollapseTermination` (its arguments), for one episode at a time."""

    def __init__(self, fraction: float = 0.9, drop: float = 0.5, penalty: float | None = None) -> None:
        if not 0 < drop < fraction:
            raise ValueError(f"need 0 < drop < fraction, got drop={drop}, fraction={fraction}")
        self.fraction, self.drop = float(fraction), float(drop)
        self.penalty = None if penalty is None else float(penalty)
        self._first = self._lowest = float("nan")

    def start(self, info: dict) -> None:
        self._first = self._lowest = float(info.get("batch_loss", float("nan")))

    def apply(self, reward, terminated, truncated, info):
        after = float(info.get("loss_after", float("nan")))
        trained = self._lowest < self.drop * self._first
        self._lowest = min(self._lowest, after) if after == after else self._lowest
        if not terminated and trained and not after < self.fraction * self._first:  # NaN counts too
            info = {**info, "diverged": True, "collapsed": True}
            return reward if self.penalty is None else -self.penalty, True, False, info
        return reward, terminated, truncated, info


class FiniteHorizonRule(EpisodeRule):
    """The rule of :class:`FiniteHorizon`: an episode's end (truncation) is a real end."""

    def apply(self, reward, terminated, truncated, info):
        return reward, terminated or truncated, False, info


class CollapseTermination(RuleWrapper):
    """End the episode as diverged when primary training collapses back to its initial loss.

    A too-large rate can kill a classifier (dead ReLUs): the loss jumps back to chance level
    (``ln 10 = 2.30`` on digits) and stays there whatever the rate. ``LearningRateEnv``'s
    divergence test (loss above ``divergence_factor`` x the initial loss) misses this, since
    chance level *is* the initial loss; so the agent gets no penalty, the episode runs on in a
    dead state that looks like the start state, and random exploration fills the critic's data
    with it. Here: once the loss the reward compares (``info["loss_after"]``) has fallen below
    ``drop`` x the episode's first mini-batch loss, a later ``loss_after`` at or above
    ``fraction`` x that first loss ends the episode (``terminated=True``, no bootstrapping from
    the dead state) with ``info["diverged"] = info["collapsed"] = True``. The step's reward is
    kept by default: with a log-ratio reward on a fixed batch it is the log of the loss jump,
    which takes back all the progress the episode had earned (returns telescope), so collapse
    costs the agent exactly what it destroyed. A fixed ``penalty`` (e.g. the env's divergence
    penalty 10) was measured to be too strong: random exploration over a wide lr range
    collapses often, and a critic fitted to -10 cliffs extrapolates that every larger rate is
    worse, so the actor retreats to ``lr_min``.

    Args:
        env: a ``LearningRateEnv`` (or a wrapper of one): needs ``info["batch_loss"]`` at reset
            and ``info["loss_after"]`` at each step.
        fraction: the collapse threshold, as a fraction of the first loss (default 0.9).
        drop: training must first have reached this fraction of the first loss (default 0.5).
        penalty: ``None`` (default): keep the collapsing step's own reward; a number: the
            reward of the collapsing step is ``-penalty``.
    """

    def __init__(self, env: gym.Env, fraction: float = 0.9, drop: float = 0.5,
                 penalty: float | None = None) -> None:
        super().__init__(env, CollapseRule(fraction, drop, penalty))
        self.fraction, self.drop, self.penalty = self.rule.fraction, self.rule.drop, self.rule.penalty


class FiniteHorizon(RuleWrapper):
    """Report the end of an episode (``truncated``) as a real end (``terminated``), so that TD
    targets do not bootstrap past it.

    Use it when the task *is* the episode: a controller judged by the primary model's loss
    after ``episode_length`` updates, with ``step_fraction`` in the observation (without the
    time in the state the value would not be Markov). With ``gamma = 1`` and a log-ratio reward
    on a fixed batch the return is then exactly ``log(loss at the start / loss at the end)``:
    the criterion the controller is evaluated on, with no short-horizon bias (a discounted or
    bootstrapped return rewards an early decay of the rate, which lowers the loss at once and
    costs more later; Wu, Ren, Liao and Grosse 2018).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env, FiniteHorizonRule())

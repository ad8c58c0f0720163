"""SB3 callbacks shared by every agent of ``train_controller.py`` (DDPG/TD3 and the SB3-shaped
:class:`~agents.actor_critic.ActorCritic` and :class:`~agents.policy_search.PolicySearch` alike):

- :class:`TqdmCallback`: a progress bar over env steps;
- :class:`ProgressLineCallback`: a periodic one-line progress report (output that is not a terminal);
- :class:`EnvInfoCallback`: logs what the env reports (rate, losses, divergence);
- :class:`PeriodicCheckpoint`: atomic checkpoints every N env steps;
- :class:`SelectBestCallback`: checkpoint selection: evaluates the deterministic policy on
  validation seeds (:func:`deterministic_return`) and leaves the best one in place.

They talk to the agent through SB3's interface only (``num_timesteps``, ``logger``, ``predict``,
``get_parameters``/``set_parameters``), so nothing here imports an agent.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat


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


class ProgressLineCallback(BaseCallback):
    """One plain line of progress every ``every_s`` seconds (and when training ends), for output
    that is not a terminal (a log file, CI, a cluster job), where a tqdm bar shows nothing useful:
    ``progress: 960/5760 steps (17%), 1m02s elapsed, best episode return so far -1.23``.
    ``write``: where the line goes (default: ``print`` to stdout, flushed)."""

    def __init__(self, total: int, every_s: float = 30.0, desc: str = "training",
                 write: Callable[[str], None] | None = None, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        import time

        self.total, self.every_s, self.desc = int(total), float(every_s), desc
        self.write = write or (lambda text: print(text, flush=True))
        self.clock = clock or time.monotonic
        self.best: float | None = None
        self._start = self._last = 0.0

    def _on_training_start(self) -> None:
        self._start = self._last = self.clock()

    def _note_returns(self) -> None:
        for episode in getattr(self.model, "ep_info_buffer", None) or ():
            r = float(episode.get("r", float("nan")))
            if math.isfinite(r) and (self.best is None or r > self.best):
                self.best = r

    def line(self) -> str:
        self._note_returns()
        done, elapsed = int(self.model.num_timesteps), self.clock() - self._start
        minutes, seconds = divmod(int(elapsed), 60)
        best = "n/a" if self.best is None else f"{self.best:.4g}"
        return (f"progress ({self.desc}): {done}/{self.total} steps ({100 * done / max(self.total, 1):.0f}%), "
                f"{minutes}m{seconds:02d}s elapsed, best episode return so far {best}")

    def _on_step(self) -> bool:
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            self.write(self.line())
        return True

    def _on_training_end(self) -> None:
        self.write(self.line())


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
    fresh one) and its episode counter matches an uninterrupted run's.

    An agent whose ``selection_unit`` is ``"generation"`` (a policy search) is saved at the end
    of the generation in which a checkpoint falls due (``on_rollout_end``), so every checkpoint is
    a generation boundary; run this callback after :class:`SelectBestCallback`, so the saved
    selection state includes that generation's evaluation.

    ``train_controller.py`` passes the actor-critic's and DDPG/TD3's (one env)
    :meth:`agents.snapshot.EpisodeSnapshots.save` as ``save_fn``: it writes the state at the
    start of the episode under way, so every checkpoint is an episode boundary and a resume is
    exact (the ``interrupted_episode_steps`` count above then stays 0)."""

    def __init__(self, every: int, save_fn: Callable[[Any], None]) -> None:
        super().__init__()
        self.every, self.save_fn = int(every), save_fn
        self.episode_step = 0
        self._due = False

    def _by_generation(self) -> bool:
        return getattr(self.model, "selection_unit", "episode") == "generation"

    def _on_step(self) -> bool:
        ended = int(np.sum(self.locals.get("dones", [])))
        self.episode_step = 0 if ended else self.episode_step + 1
        # num_timesteps grows by num_envs per call with a vector env: save on crossing a multiple
        n_envs = int(getattr(self.model, "n_envs", 1) or 1)
        if self.every > 0 and self.num_timesteps // self.every > (self.num_timesteps - n_envs) // self.every:
            if self._by_generation():
                # a policy search's state changes once per generation: save at its end (a save
                # mid-generation would only repeat the previous boundary's state)
                self._due = True
            else:
                self.save(self.model, pending_episodes=ended)
        return True

    def _on_rollout_end(self) -> None:
        if self._due:
            self._due = False
            self.save(self.model)

    def save(self, model: Any, pending_episodes: int = 0) -> None:
        """Save ``model`` now (also for the final and the interrupted save)."""
        model._episode_num += pending_episodes
        model.interrupted_episode_steps = int(self.episode_step)
        try:
            self.save_fn(model)
        finally:
            model._episode_num -= pending_episodes


# --------------------------------------------------------------------------- checkpoint selection
def deterministic_return(model: Any, env: gym.Env, seeds: Sequence[int], failure_cost: float = 0.0) -> float:
    """Mean undiscounted return of ``model.predict(..., deterministic=True)`` (SB3 signature,
    recurrent state carried) over one episode per seed, each from ``env.reset(seed=s)``; the env is
    stepped until it terminates or truncates. An episode whose last ``info["diverged"]`` is true
    (diverged, or collapsed under :class:`~agents.wrappers.CollapseTermination`) costs another
    ``failure_cost``: with a cost above any return, fewer failures always rank first."""
    returns = []
    for seed in seeds:
        obs, _ = env.reset(seed=int(seed))
        state, start, total, done, info = None, True, 0.0, False, {}
        while not done:
            action, state = model.predict(obs, state=state, episode_start=np.array([start]), deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            total, start, done = total + float(reward), False, terminated or truncated
        returns.append(total - (failure_cost if info.get("diverged") else 0.0))
    return float(np.mean(returns))


class SelectBestCallback(BaseCallback):
    """Checkpoint selection, for every agent: evaluate the deterministic policy on ``eval_env``
    (one episode per seed of ``seeds``, each from ``reset(seed=s)``: the same ``w0`` and batch
    order every time; use seeds that are neither training nor test seeds) at regular points of
    training and once more at its end, and put the best policy back in place when training ends.
    Why: a critic's ``dQ/da`` oscillates, so the last policy is a draw from a cycle, not the best
    one seen (the paper keeps the last).

    When it evaluates: every ``eval_freq`` finished training episodes (counted from the model's own
    episode counter, so a resumed run evaluates where an uninterrupted one would), or, for an agent
    whose ``selection_unit`` is ``"generation"`` (:class:`~agents.policy_search.PolicySearch`),
    every ``eval_freq`` generations: such an agent calls ``callback.on_rollout_end()`` once a
    generation's update is done, with ``model.generation`` counted.

    What it keeps: ``model.get_parameters()`` (SB3's API; the actor and observation normaliser of
    an :class:`~agents.actor_critic.ActorCritic`, the search mean of a ``PolicySearch``, the policy
    networks of DDPG/TD3), without optimizer states, restored with ``model.set_parameters``.

    With ``failure_cost`` every selection episode that diverged or collapsed (``info["diverged"]``)
    costs that much more (see :func:`deterministic_return`).

    Logs ``eval/mean_reward``; ``best_return`` / ``best_timestep`` record the selected policy.
    """

    def __init__(self, eval_env: gym.Env, eval_freq: int, seeds: Sequence[int], failure_cost: float = 0.0) -> None:
        super().__init__()
        if int(eval_freq) < 1:
            raise ValueError(f"eval_freq must be >= 1, got {eval_freq}")
        self.eval_env, self.eval_freq = eval_env, int(eval_freq)
        self.seeds = tuple(int(s) for s in seeds)
        self.failure_cost = float(failure_cost)
        self.best_return: float | None = None
        self.best_timestep: int | None = None
        self.best_parameters: dict | None = None
        self.episodes = 0
        self._checked_at: int | None = None
        #: the selection so far of a resumed actor-critic or DDPG/TD3 run (agents/snapshot.py)
        self.resumed: dict | None = None

    def _by_generation(self) -> bool:
        return getattr(self.model, "selection_unit", "episode") == "generation"

    def _on_training_start(self) -> None:
        self.best_return = self.best_timestep = self.best_parameters = None
        self._checked_at = None
        self.episodes = int(getattr(self.model, "_episode_num", 0) or 0)
        saved = getattr(self.model, "selection_state", None)
        if saved is not None:  # a resumed run: its selection so far came back with its checkpoint
            self.best_return, self.best_timestep = saved["best_return"], saved["best_timestep"]
            self.best_parameters = {"search": {"mean": torch.as_tensor(saved["best_mean"])}}
        if self.resumed is not None:
            self.best_return, self.best_timestep = self.resumed["best_return"], self.resumed["best_timestep"]
            self.best_parameters, self.resumed = self.resumed["best_parameters"], None

    def select(self) -> None:
        """Evaluate the current policy now; keep a copy of it if it is the best so far."""
        value = deterministic_return(self.model, self.eval_env, self.seeds, self.failure_cost)
        timestep = int(self.model.num_timesteps)
        self._checked_at = timestep
        self.logger.record("eval/mean_reward", value)
        if self.best_return is None or value > self.best_return:
            self.best_return, self.best_timestep = value, timestep
            self.best_parameters = copy.deepcopy(
                {name: state for name, state in self.model.get_parameters().items() if "optimizer" not in name})
            if hasattr(self.model, "selection_state"):  # the agent checkpoints its selection (policy search)
                self.model.selection_state = {
                    "best_return": float(value), "best_timestep": timestep,
                    "best_mean": self.best_parameters["search"]["mean"].double().numpy().copy()}

    def _on_step(self) -> bool:
        if self._by_generation():
            return True
        dones = self.locals.get("dones")
        if dones is not None and np.any(dones):
            self.episodes += int(np.sum(dones))
            if self.episodes % self.eval_freq == 0:
                self.select()
        return True

    def _on_rollout_end(self) -> None:
        if self._by_generation() and int(self.model.generation) % self.eval_freq == 0:
            self.select()

    def _on_training_end(self) -> None:
        if self._checked_at is None or self._checked_at != int(self.model.num_timesteps):
            self.select()  # (the policy training ended with is not evaluated yet)
            self.logger.dump(step=int(self.model.num_timesteps))
        self.model.set_parameters(self.best_parameters, exact_match=False)

"""The controller side: the paper's actor-critic, baselines, SB3 glue and checkpoints."""
from agents.actor_critic import ActorCritic
from agents.checkpoint import CheckpointError, Controller, load_controller
from agents.scheduler import ControllerScheduler

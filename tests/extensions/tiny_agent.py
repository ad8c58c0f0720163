"""A trivial agent, in a module of its own: the paper's actor-critic with its exploration noise
fixed, registered under its own name."""
from agents.actor_critic import ActorCritic
from agents.registry import AgentType


class TinyActorCritic(ActorCritic):
    """The actor-critic with exploration noise of std 0.05, whatever the preset says."""

    def __init__(self, env=None, **kwargs):
        super().__init__(env, **{**kwargs, "noise_std": 0.05})


TINY = AgentType("tiny-actor-critic", "controller.pt", flag_keys=("gamma",),
                 preset_kwargs=lambda preset, num_envs: dict(preset["agent"]),
                 model_class="extensions.tiny_agent:TinyActorCritic")

"""The controller side: the paper's actor-critic, baselines, SB3 glue and checkpoints."""

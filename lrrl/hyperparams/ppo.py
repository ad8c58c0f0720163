"""rl-zoo3's hyperparameters of PPO for every registered id, from the shipped ``ppo.yml``:
``python -m rl_zoo3.train --algo ppo --conf-file lrrl.hyperparams.ppo --gym-packages lrrl ...``."""
from lrrl.hyperparams import load

hyperparams = load("ppo")

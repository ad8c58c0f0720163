"""rl-zoo3's hyperparameters of DDPG for every registered id, from the shipped ``ddpg.yml``:
``python -m rl_zoo3.train --algo ddpg --conf-file lrrl.hyperparams.ddpg --gym-packages lrrl ...``."""
from lrrl.hyperparams import load

hyperparams = load("ddpg")

"""rl-zoo3's hyperparameters of TD3 for every registered id, from the shipped ``td3.yml``:
``python -m rl_zoo3.train --algo td3 --conf-file lrrl.hyperparams.td3 --gym-packages lrrl ...``."""
from lrrl.hyperparams import load

hyperparams = load("td3")

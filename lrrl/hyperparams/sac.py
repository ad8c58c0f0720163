"""rl-zoo3's hyperparameters of SAC for every registered id, from the shipped ``sac.yml``:
``python -m rl_zoo3.train --algo sac --conf-file lrrl.hyperparams.sac --gym-packages lrrl ...``."""
from lrrl.hyperparams import load

hyperparams = load("sac")

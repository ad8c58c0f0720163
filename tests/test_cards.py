"""tools/cards.py: a card per registered id, rendered from recorded results only."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools import cards  # noqa: E402
import envs  # noqa: E402


def _entry(ret, loss, **extra):
    return {"mean_return": ret, "std_return": 0.01, "mean_final_train_loss": loss,
            "std_final_train_loss": None if loss is None else 0.001, "diverged": 0 if loss else 3, **extra}


def test_card_picks_the_best_constant_and_tuned_rows_from_the_record():
    record = {
        "status": "measured", "seeds": [1000, 1001, 1002], "episode_length": 200, "decisions": 200,
        "batch_size": 10, "n_train": 1000, "n_test": 1000, "n_parameters": 2, "wall_time_s": 5.0,
        "machine": {"cpu_count": 2, "time": "t", "torch": "x", "python": "y"},
        "cost_per_step": {"wall_ms_median": 1.5, "cpu_ms_median": 1.0, "steps_timed": 100, "load_average_1min": 3.0},
        "random": _entry(0.5, 1.2),
        "constant": {"-1.0": _entry(0.1, 2.0, action=-1.0, lr=1e-5),
                     "+0.0": _entry(0.9, 0.8, action=0.0, lr=3.16e-3),   # best return
                     "+0.6": _entry(0.7, 0.3, action=0.6, lr=0.1),       # lowest final loss
                     "+1.0": _entry(-10.0, None, action=1.0, lr=1.0)},  # diverged
        "adam": {"0.01": _entry(0.6, 0.2, lr=0.01), "0.1": _entry(0.2, None, lr=0.1)},
    }
    text = cards.render_card("LearningRate-Regression2D-v0", record)
    assert "best constant action (by return): a = +0.0, lr 0.00316" in text
    assert "tuned SGD (constant rate with the lowest final loss): lr 0.1 | 0.7 ± 0.01 | 0.3 ± 0.001" in text
    assert "tuned Adam" in text and "lr 0.01 | 0.6" in text
    assert "Held-out primary seeds 1000, 1001, 1002" in text and "1.50 ms wall" in text


def test_card_of_an_id_without_data_says_what_is_missing():
    text = cards.render_card("LearningRate-CIFAR10-v0", {"status": "data absent", "message": "cifar10: missing files"})
    assert "data of this task is absent" in text and "cifar10: missing files" in text
    assert "Missing: cost per step" in text and "Box(-1.0, 1.0, (1,), float32)" in text


@pytest.mark.parametrize("env_id", list(envs.ENV_IDS))
def test_a_card_exists_for_every_registered_id(env_id):
    card = cards.CARDS_DIR / f"{env_id}.md"
    assert card.is_file()
    assert card.read_text() == cards.render_card(env_id, cards.load_record(env_id))  # up to date

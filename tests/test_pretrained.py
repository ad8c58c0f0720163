"""Controllers shipped with the package (agents/pretrained/NAME/), loadable by name:
``ControllerScheduler.from_pretrained``, ``load_controller("pretrained:NAME")`` and
``evaluate.py pretrained:NAME``."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from agents import ControllerScheduler
from agents.checkpoint import load_controller
from agents.pretrained import PRETRAINED, card, pretrained_path

#: name -> (its optimizer, the optimizer's class, the task it was trained on)
TRAINED_FOR = {"general": ("sgd", torch.optim.SGD, "suite-train"), "sgd": ("sgd", torch.optim.SGD, "digits"),
               "adam": ("adam", torch.optim.Adam, "digits")}


def test_the_names_are_listed_once_and_each_has_its_files():
    assert set(PRETRAINED) == set(TRAINED_FOR)
    for name in PRETRAINED:
        folder = pretrained_path(name)
        assert {"controller.pt", "settings.json", "CARD.md"} <= {p.name for p in folder.iterdir()}
        ctrl = load_controller(f"pretrained:{name}")
        assert ctrl.name == f"pretrained:{name}" and ctrl.trained_task == TRAINED_FOR[name][2]
        assert ctrl.env_kwargs()["optimizer"] == TRAINED_FOR[name][0]
        text = card(name)  # the card says how it was trained and how it measured, with the commands
        assert "python train_controller.py" in text and f"python evaluate.py pretrained:{name}" in text
        assert "Measured" in text


@pytest.mark.parametrize("name", sorted(TRAINED_FOR))
def test_from_pretrained_trains_digits_in_a_plain_loop(name):
    """digits (the task ``sgd`` and ``adam`` were trained on; ``general`` saw CNNs up to this one on
    subsets of it), in a loop of one's own (its own initialisation, batches drawn
    with replacement, batch 50) over its training horizon of 1,000 updates: it ends far below
    chance (2.3) and below what its optimizer reaches at a rate tuned in the env (SGD 0.5 and Adam
    0.005 both end near 4.5e-4 there; the cards have the numbers)."""
    from envs.tasks import make_task

    task = make_task("digits")
    torch.manual_seed(0)
    model = task.model_factory()
    optimizer = TRAINED_FOR[name][1](model.parameters(), lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the optimizer it was trained for: no warning
        scheduler = ControllerScheduler.from_pretrained(name, optimizer, total_steps=1000)
    assert repr(scheduler).startswith(f"ControllerScheduler(controller='pretrained:{name}'")
    g = torch.Generator().manual_seed(0)
    for _ in range(1000):
        idx = torch.randint(0, len(task.x_train), (50,), generator=g)
        optimizer.zero_grad()
        loss = task.loss_fn(model(task.x_train[idx]), task.y_train[idx])
        loss.backward()
        scheduler.step(loss)
        optimizer.step()
    # (the trust action's rates are relative to ||w_0|| / ||g_0||: trust_scale; 1 for the others)
    top = scheduler.control.lr_max * scheduler.control.trust_scale
    assert scheduler.last_epoch == 1000 and 0 < scheduler.get_last_lr()[0] <= top
    with torch.no_grad():
        final = task.loss_fn(model(task.x_train), task.y_train).item()
    assert final < 4.5e-4, f"{name}: final full training loss {final:.3g} after 1,000 updates"


def test_unknown_name_is_one_clear_error_listing_the_names(tmp_path, capsys):
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no pretrained controller 'sgdd'; the shipped ones are: general, sgd, adam"):
        ControllerScheduler.from_pretrained("sgdd", optimizer)
    with pytest.raises(ValueError, match="no pretrained controller 'nope'; the shipped ones are: general, sgd, adam"):
        load_controller("pretrained:nope")
    import evaluate

    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["pretrained:nope", "--task", "regression2d", "--out", str(tmp_path / "x")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "no pretrained controller 'nope'; the shipped ones are: general, sgd, adam" in err and "Traceback" not in err


def test_evaluate_takes_a_pretrained_name(tmp_path):
    import evaluate

    out = tmp_path / "ev"
    assert evaluate.main(["pretrained:sgd", "--task", "regression2d", "--updates", "20", "--seeds", "1",
                          "--baselines", "sgd", "--grid", "paper", "--episodes", "0", "--jobs", "1",
                          "--out", str(out)]) == 0
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())["summary"]}
    assert "pretrained:sgd (trained on digits)" in rows

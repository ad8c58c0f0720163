"""Controllers shipped with the package, loadable by name.

Each lives in ``agents/pretrained/NAME/`` as a run directory of ``train_controller.py``
(``controller.pt`` and ``settings.json``, read like any run: :func:`agents.checkpoint.load_controller`)
with a ``CARD.md``: what it was trained on, the command that trained it and its measured results.

    from agents import ControllerScheduler

    scheduler = ControllerScheduler.from_pretrained("general", optimizer, total_steps=1000)

Everywhere a run directory is accepted, ``"pretrained:NAME"`` names a shipped controller
(``load_controller("pretrained:general")``, ``python evaluate.py pretrained:general ...``).
"""
from __future__ import annotations

import os
from pathlib import Path

#: the shipped controllers: name -> what it is (its CARD.md says how it was trained and measured)
PRETRAINED = {
    "general": "sets the learning rate of plain SGD in the model's own units (a trust ratio); trained on the task "
               "suite's train families, for problems it never saw (the default preset, `recommended`)",
    "sgd": "sets the learning rate of plain SGD (a rate and a step-length cap); trained on digits",
    "adam": "sets the learning rate of Adam; trained on digits",
}
#: how a shipped controller is named where a run directory is expected
PREFIX = "pretrained:"
_HERE = Path(__file__).resolve().parent


def pretrained_path(name: str) -> Path:
    """The directory of the shipped controller ``name`` (``"general"``, ``"sgd"``, ``"adam"``; a leading
    ``"pretrained:"`` is accepted). An unknown name is a ``ValueError`` listing the names."""
    key = name[len(PREFIX):] if isinstance(name, str) and name.startswith(PREFIX) else name
    if key not in PRETRAINED:
        raise ValueError(f"no pretrained controller {key!r}; the shipped ones are: {', '.join(PRETRAINED)}")
    return _HERE / key


def resolve(path: str | os.PathLike) -> str | os.PathLike:
    """``"pretrained:NAME"`` -> that controller's directory; any other path unchanged."""
    if isinstance(path, str) and path.startswith(PREFIX):
        return pretrained_path(path)
    return path


def card(name: str) -> str:
    """The text of the controller's ``CARD.md``."""
    return (pretrained_path(name) / "CARD.md").read_text()


__all__ = ["PRETRAINED", "PREFIX", "pretrained_path", "resolve", "card"]

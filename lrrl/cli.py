"""What the command lines share: their names, and ``python -m lrrl COMMAND ...``.

The commands are :mod:`lrrl.train_cli` (``lrrl-train``, ``python -m lrrl train``, the
repository's ``train_controller.py``) and :mod:`lrrl.evaluate_cli` (``lrrl-evaluate``,
``python -m lrrl evaluate``, the repository's ``evaluate.py``): the same parser and ``main``
whichever way they are called.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Sequence

#: command -> the module whose ``main(argv)`` runs it
COMMANDS = {"train": "lrrl.train_cli", "evaluate": "lrrl.evaluate_cli"}


def command_name(script: str) -> str:
    """The name ``--help`` and error messages show: the console script or ``python -m lrrl ...``
    that was run, else ``script`` (the repository's script, or a call from Python)."""
    invoked = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return invoked if invoked.startswith(("lrrl-", "python -m lrrl")) else script


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lrrl COMMAND [ARGS...]``: run one command's ``main`` with ``ARGS``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: python -m lrrl {{{','.join(COMMANDS)}}} [ARGS...]   (python -m lrrl COMMAND --help)"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"{usage}\npython -m lrrl: error: unknown command {argv[0]!r}", file=sys.stderr)
        return 2
    sys.argv[0] = f"python -m lrrl {argv[0]}"
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])

"""Train a learning-rate controller: ``python train_controller.py --help`` lists every flag.

A thin script of the repository over :mod:`lrrl.train_cli` (installed as ``lrrl-train`` and
``python -m lrrl train``), which holds the parser and ``main``.
"""
import sys

from lrrl.train_cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())

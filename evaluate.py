"""Evaluate controllers against tuned optimizers: ``python evaluate.py --help`` lists every flag.

A thin script of the repository over :mod:`lrrl.evaluate_cli` (installed as ``lrrl-evaluate`` and
``python -m lrrl evaluate``), which holds the parser and ``main``.
"""
import sys

from lrrl.evaluate_cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())

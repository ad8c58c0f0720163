"""What a baseline method of the tuning protocol is: :class:`BaselineMethod`.

One object per baseline (:data:`lrrl.methods.BASELINE_METHODS` is the registry) says everything
:func:`lrrl.protocol.evaluate_methods` does with it: the runs of the protocol's first phase
(what needs no tuning result), those of its second phase (what the first phase's picks decide),
and its rows of the summary table. Each reads and records through a :class:`ProtocolView`,
which the protocol provides (the seeds, the finished runs, the grids, the rows).

A new baseline is a module with a :class:`BaselineMethod` subclass and one line in the
registry; nothing else names it.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

#: where a method's rows stand in the summary table (rows are ordered by rank, then registry
#: order; the controllers come last)
RANK_PAPER, RANK_UNTUNED, RANK_FITTED_PAPER, RANK_FINE = 0, 10, 20, 30
RANK_CLIPPED, RANK_GRADNORM, RANK_COSINE, RANK_HD, RANK_LRFREE, RANK_OTHER = 40, 50, 60, 70, 80, 90


def fmt_param(x: float) -> str:
    """A parameter to 3 significant digits: how it names a run's file, is shown in tables, and
    (as ``float(fmt_param(x))``) how derived grid values are rounded."""
    return f"{x:.3g}"


class ProtocolView(Protocol):
    """What a method sees of one evaluation (implemented by :class:`lrrl.protocol.ProtocolRun`)."""

    names: list[str]
    """The baselines of this evaluation (after aliases and missing packages)."""
    seeds: list[int]
    """The held-out evaluation seeds."""
    show_paper: bool
    """Report the paper's decade-grid rows."""
    show_fine: bool
    """Run and report the fine grids."""
    state: dict[str, dict]
    """Per method name, what its first phase leaves for its second and for its rows."""

    def spec(self, family: str, seed: int, param: Any = None, **kwargs) -> dict:
        """A run spec (:func:`lrrl.sweep.make_spec`)."""

    def by(self, family: str, params: Sequence | None = None, seeds: Sequence[int] | None = None) -> list[dict]:
        """The finished runs of ``family`` at ``params`` (default: no parameter) on ``seeds``
        (default: the evaluation seeds)."""

    def best(self, grid: str, records: list[dict]) -> Any:
        """The parameter with the lowest mean final training loss; its grid is reported as ``grid``."""

    def best_decade(self, optimizer: str) -> float:
        """The best rate of ``optimizer`` on the decade grid (its grid reported once)."""

    def row(self, rank: int, label: str, tuning: str, records: list[dict], param: Any = None,
            param_name: str = "") -> None:
        """Add a summary row (:func:`lrrl.stats.summarize`) at ``rank``."""


class BaselineMethod:
    """A baseline of the tuning protocol. Subclasses set ``name`` and ``label`` and override
    what they need; the defaults add no runs, no rows and no notes.

    Attributes:
        name: its name on the command line (``--baselines NAME``) and its runs' family.
        label: its name in the tables and figures.
        package: a package it needs (``None``: none); a missing one skips it with a note.
    """

    name: str = ""
    label: str = ""
    package: str | None = None

    def notes(self, view: ProtocolView) -> list[str]:
        """Sentences for the report about this method in this evaluation."""
        return []

    def first_phase(self, view: ProtocolView) -> list[dict]:
        """Run specs that need no tuning result."""
        return []

    def second_phase(self, view: ProtocolView) -> list[dict]:
        """Run specs decided by the first phase's results."""
        return []

    def add_rows(self, view: ProtocolView) -> None:
        """Its rows of the summary table (``view.row``)."""

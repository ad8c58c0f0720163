"""The statistics every report uses, defined once.

``mean ± std`` is the mean and the *population* standard deviation (``ddof=0``) over the values
that are finite, everywhere in this project (evaluate.py's tables, the study, the transfer and
hold-out benchmarks): the spread of the seeds that were run, not an estimate for unseen seeds.
A diverged run is not averaged in; it is counted (``diverged`` / ``collapsed`` columns) and it
makes the median infinite, because it is the worst outcome, not a missing one.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

#: a run has collapsed when it diverged or its final full training loss is at least this fraction
#: of its initial one (a classifier back at chance level, a model that did not train)
COLLAPSE_FRACTION = 0.9


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """``(mean, std (ddof=0), n)`` over the finite values; ``(nan, nan, 0)`` if there are none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan, 0
    return float(np.mean(vals)), float(np.std(vals)), len(vals)


def median_with_failures(values: Sequence[float | None]) -> float:
    """Median where ``None`` (a diverged run) counts as ``+inf``; ``nan`` for no values."""
    if not values:
        return math.nan
    return float(np.median([math.inf if v is None else v for v in values]))


def final_train(record: dict) -> float:
    """A run record's final full training loss, ``inf`` for a diverged or failed run."""
    v = (record.get("final") or {}).get("train_loss")
    return float(v) if record.get("status") == "ok" and v is not None else math.inf


def collapsed(record: dict) -> bool:
    """Diverged, failed, or ended at >= COLLAPSE_FRACTION of its initial full training loss."""
    if record.get("status") != "ok":
        return True
    curve = (record.get("curves") or {}).get("train_loss") or []
    final = (record.get("final") or {}).get("train_loss")
    return bool(curve) and final is not None and final >= COLLAPSE_FRACTION * curve[0]


def summarize(label: str, protocol: str, records: list[dict], param: Any = None, param_name: str = "") -> dict:
    """One table row: mean ± std over seeds of the final losses and accuracy, the median and
    per-seed final training losses (``None`` for a diverged seed) and the collapse count."""
    row = {"method": label, "protocol": protocol, "param_name": param_name,
           "param": list(param) if isinstance(param, tuple) else param,
           "seeds": len(records), "diverged": sum(r["status"] == "diverged" for r in records),
           "errors": sum(r["status"] == "error" for r in records),
           "messages": sorted({r.get("message", "") for r in records if r.get("message")}),
           "keys": [r["key"] for r in records]}
    for k in ("train_loss", "test_loss", "test_accuracy"):
        m, s, _ = mean_std([(r.get("final") or {}).get(k) for r in records])
        row[f"{k}_mean"], row[f"{k}_std"] = m, s
    finals = [(r.get("final") or {}).get("train_loss") for r in records]
    row["train_loss_per_seed"] = finals
    row["seed_list"] = [r["spec"]["seed"] for r in records]
    row["train_loss_median"] = median_with_failures(finals)
    row["collapsed"] = sum(collapsed(r) for r in records)
    row["wall_time"] = float(np.mean([r["wall_time"] for r in records])) if records else math.nan
    return row

"""The figures of an evaluation: the paper's Figures 2-5 and the learning rates chosen.

:func:`write_figures` draws them from summary rows and run records, as evaluate.py makes them
and as ``tools/regenerate_docs.py`` redraws them from recorded results.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lrrl.report import param_text


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_STYLES = ["-", "--", "-.", ":"]


def _style(i: int) -> dict:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {"color": cmap(i % 10), "linestyle": _STYLES[(i // 10) % len(_STYLES)]}


def _aggregate(records: list[dict], key: str, x_key: str = "eval_steps"):
    """(x, mean, min, max) over the seeds that finished; ``None`` if none did."""
    curves = [r["curves"] for r in records if r["status"] == "ok" and r["curves"].get(key)]
    if not curves:
        return None
    n = min(len(c[key]) for c in curves)
    y = np.array([[np.nan if v is None else v for v in c[key][:n]] for c in curves], dtype=float)
    x = np.arange(n) if x_key is None else np.array(curves[0][x_key][:n])
    return x, np.nanmean(y, axis=0), np.nanmin(y, axis=0), np.nanmax(y, axis=0)


def _save(fig, path: Path, **kwargs) -> None:
    """``fig.savefig(path)`` as an atomic write (:func:`agents.io.atomic_write_bytes`): a symlink
    planted at ``path`` is refused, not followed, and a failed write leaves no half figure."""
    import io

    from agents.io import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **kwargs)
    atomic_write_bytes(path, buffer.getvalue())


def plot_losses(rows: list[dict], records: dict[str, dict], path: Path, title: str) -> None:
    """Paper Figures 2/3: training and test loss vs mini-batches, mean over seeds, min-max band."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharex=True)
    for i, row in enumerate(rows):
        recs = [records[k] for k in row["keys"]]
        for ax, key in zip(axes, ("train_loss", "test_loss")):
            agg = _aggregate(recs, key)
            label = f"{row['method']} ({param_text(row)})" if param_text(row) else row["method"]
            if agg is None:
                ax.plot([], [], label=label + " — diverged", **_style(i))
                continue
            x, m, lo, hi = agg
            ax.plot(x, m, label=label, lw=1.6, **_style(i))
            ax.fill_between(x, lo, hi, alpha=0.15, color=_style(i)["color"], lw=0)
    for ax, name in zip(axes, ("training loss", "test loss")):
        if any(len(line.get_ydata()) for line in ax.get_lines()):  # log scale needs data (all may diverge)
            ax.set_yscale("log")
        ax.set_xlabel("mini-batches")
        ax.set_ylabel(name + " (full set)")
        ax.set_title(name)
        ax.grid(True, which="major", alpha=0.3)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_learning_rates(rows: list[dict], records: dict[str, dict], path: Path, title: str) -> None:
    """The learning rate each adaptive method / controller used, per update (geometric mean
    over seeds; lr-free optimizers show their effective step size d * lr)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 5))
    for i, row in enumerate(rows):
        recs = [records[k] for k in row["keys"]]
        curves = [r["curves"]["effective_lr"] for r in recs if r["status"] == "ok" and r["curves"].get("effective_lr")]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        y = np.log(np.clip(np.array([c[:n] for c in curves], dtype=float), 1e-12, None))
        x = np.arange(1, n + 1)
        ax.plot(x, np.exp(y.mean(0)), label=row["method"], lw=1.5, **_style(i))
        ax.fill_between(x, np.exp(y.min(0)), np.exp(y.max(0)), alpha=0.12, color=_style(i)["color"], lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("mini-batches")
    ax.set_ylabel("learning rate (effective step size for lr-free)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    _save(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _regression_data(common: dict):
    from envs.primary import PrimaryTrainer

    tr = PrimaryTrainer(common["task"], device="cpu", validation_size=common["validation_size"],
                        data_root=common["data_root"])
    return tr.x_train.double(), tr.y_train.double().reshape(-1)


def plot_trajectories(rows: list[dict], records: dict[str, dict], common: dict, seeds: list[int],
                      path: Path) -> None:
    """Paper Figure 4: the two weights' trajectories over the training-loss contours, one panel
    per seed (different w0), one line per method."""
    import torch

    plt = _plt()
    x, y = _regression_data(common)
    w_star = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.reshape(-1).numpy()
    n = len(y)
    A, b, c = (x.T @ x / n).numpy(), (x.T @ y / n).numpy(), float(y @ y / n)
    panels = seeds[:3]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.8), squeeze=False)
    for ax, seed in zip(axes[0], panels):
        trajs = []
        for i, row in enumerate(rows):
            rec = next((records[k] for k in row["keys"] if records[k]["spec"]["seed"] == seed), None)
            if rec is None or not rec["curves"].get("weights"):
                continue
            w = np.array(rec["curves"]["weights"], dtype=float)
            w = w[np.all(np.isfinite(w), axis=1)]
            trajs.append((i, row, w))
        pts = np.concatenate([w for _, _, w in trajs] + [w_star[None]], axis=0)
        lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
        pad = 0.15 * (hi - lo) + 0.1
        g0, g1 = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200), np.linspace(lo[1] - pad[1], hi[1] + pad[1], 200)
        W0, W1 = np.meshgrid(g0, g1)
        # mean squared error as a quadratic form: w^T A w - 2 b^T w + c (no n x grid tensor)
        W = np.stack([W0.ravel(), W1.ravel()], 1)
        loss = (np.einsum("ki,ij,kj->k", W, A, W) - 2 * W @ b + c).reshape(W0.shape)
        levels = np.geomspace(loss.min() * 1.002 + 1e-9, loss.max(), 16)
        ax.contourf(W0, W1, loss, levels=levels, cmap="Blues_r", alpha=0.35)
        cs = ax.contour(W0, W1, loss, levels=levels, colors="0.45", linewidths=0.6)
        ax.clabel(cs, cs.levels[::3], fontsize=6, fmt="%.2g")
        for i, row, w in trajs:
            st = _style(i)
            ax.plot(w[:, 0], w[:, 1], lw=1.0, alpha=0.85, label=row["method"], **st)
            ax.plot(w[0, 0], w[0, 1], "o", color=st["color"], ms=4)
        ax.plot(*w_star, marker="*", color="crimson", ms=13, ls="none", label="least squares w*")
        ax.set_xlim(g0[0], g0[-1])
        ax.set_ylim(g1[0], g1[-1])
        ax.set_xlabel("w[0]")
        ax.set_ylabel("w[1]")
        ax.set_title(f"seed {seed}")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle("Optimisation trajectories over the training-loss contours (paper Fig. 4)")
    fig.tight_layout()
    _save(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_disagreement(rows: list[dict], records: dict[str, dict], seed: int, path: Path) -> None:
    """Paper Figure 5: gradient disagreement ||g_batch - g_full||, training and test loss over
    time, one run (the first evaluation seed) per method."""
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for i, row in enumerate(rows):
        rec = next((records[k] for k in row["keys"] if records[k]["spec"]["seed"] == seed), None)
        if rec is None or not rec["curves"].get("disagreement"):
            continue
        c, st = rec["curves"], _style(i)
        d = np.array([np.nan if v is None else v for v in c["disagreement"]], dtype=float)
        x = np.asarray(c.get("trace_steps") or np.arange(len(d)))[:len(d)]  # update count of each entry
        axes[0].plot(x, d, lw=0.6, alpha=0.35, color=st["color"])
        k = max(1, len(d) // 50)  # moving average, so the trend is readable under the noise
        axes[0].plot(x[k - 1:], np.convolve(d, np.ones(k) / k, mode="valid"),
                     lw=1.6, label=row["method"], **st)
        for ax, key in zip(axes[1:], ("train_loss", "test_loss")):
            ax.plot(c["eval_steps"][:len(c[key])], c[key], lw=1.6, label=row["method"], **st)
    for ax, name in zip(axes, ("gradient disagreement ||g_batch - g_full||", "training loss", "test loss")):
        ax.set_yscale("log")
        ax.set_ylabel(name, fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("mini-batches")
    fig.suptitle(f"Gradient disagreement and losses, seed {seed} (paper Fig. 5)")
    fig.tight_layout()
    _save(fig, path, dpi=110)
    plt.close(fig)




def write_figures(rows: list[dict], R: dict[str, dict], common: dict, seeds: list[int], out: Path,
                  task: str) -> list[str]:
    """The figures of an evaluation (PNG files in ``out``); returns their file names."""
    figures = []
    paper_rows = [r for r in rows if "paper" in r["protocol"] or r["protocol"] == "controller"]
    other_rows = [r for r in rows if r not in paper_rows or r["protocol"] == "controller"]
    if paper_rows:
        plot_losses(paper_rows, R, out / "loss_paper_protocol.png",
                    f"{task}: the paper's protocol (decade-grid baselines, vSGD, Daniel-style)")
        figures.append("loss_paper_protocol.png")
    if any(r["protocol"] != "controller" for r in other_rows):
        plot_losses(other_rows, R, out / "loss_tuned.png",
                    f"{task}: fine-tuned and learning-rate-free baselines")
        figures.append("loss_tuned.png")
    adaptive = [r for r in rows if r["protocol"] in ("no tuning (paper)", "fit on train seeds (paper)",
                                                     "tuned peak", "tuned beta", "lr-free", "controller")]
    if adaptive:
        plot_learning_rates(adaptive, R, out / "learning_rates.png",
                            f"{task}: learning rate chosen over time (mean over seeds, min-max band)")
        figures.append("learning_rates.png")
    if common["trace"]:
        pick = [r for r in rows if (r["method"] in ("SGD", "Adam") and r["protocol"] == "decade grid (paper)")
                or r["method"] == "vSGD" or r["protocol"] == "controller"]
        pick = pick or rows[:3]
        if pick:
            plot_trajectories(pick, R, common, seeds, out / "fig4_trajectories.png")
            figures.append("fig4_trajectories.png")
        sgd = [r for r in rows if r["method"] == "SGD"][:1]
        ctrls = [r for r in rows if r["protocol"] == "controller"]
        others = ctrls or [r for r in rows if r["method"] in ("vSGD", "Adam") and r not in sgd][:2]
        if sgd or others:
            plot_disagreement(sgd + others, R, seeds[0], out / "fig5_disagreement.png")
            figures.append("fig5_disagreement.png")
    return figures

"""benchmarks/quality.py at a tiny size: it reads an evaluate.py output and a controller run."""
import json

import evaluate
import train_controller
from benchmarks import quality


def test_quality_tiny(tmp_path, capsys):
    run = tmp_path / "ctrl"
    assert train_controller.main(["--preset", "paper", "--task", "regression2d", "--episode-length", "20",
                                  "--steps", "40",
                                  "--no-progress", "--checkpoint-every", "0", "--out", str(run)]) == 0
    ev = tmp_path / "eval"
    assert evaluate.main([str(run), "--task", "regression2d", "--steps", "20", "--seeds", "2",
                          "--baselines", "sgd,schedulefree-sgd", "--grid", "paper", "--episodes", "0",
                          "--eval-every", "10", "--out", str(ev)]) == 0
    assert quality.main([str(ev), str(run)]) == 0
    rows = {r["method"]: r for r in json.loads((ev / "quality.json").read_text())["rows"]}
    # the controller pays for its 40 training updates plus 2 seeds x 20 updates
    assert rows["ctrl"]["updates"] == 40 + 2 * 20
    # the decade grid pays for its 5 candidates on both seeds
    assert rows["SGD (decade grid (paper))"]["updates"] == 5 * 2 * 20
    assert (ev / "quality.png").stat().st_size > 10_000
    assert "final train loss" in capsys.readouterr().out

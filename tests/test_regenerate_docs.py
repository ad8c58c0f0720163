"""tools/regenerate_docs.py: the results tables of the pages (README.md, docs/results.md) and
docs/results-*.md come from recorded results; the generated tables must equal what the recordings give."""
import gzip
import json
import math
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import regenerate_docs as R  # noqa: E402

SMALL = ROOT / "tests" / "data" / "regen" / "digits-small"


def test_results_tables_equal_recorded_results():
    outputs = R.regenerate(ROOT)
    names = R.page_names(ROOT)
    assert {"digits", "regression2d"} <= set(names)  # the evaluation tables of docs/results.md are generated
    for path, text in outputs.items():
        assert path.read_text() == text, (f"{path.relative_to(ROOT)} differs from what the recorded results "
                                          f"give: run python tools/regenerate_docs.py")
    missing = R.unrecorded(ROOT)
    if missing:
        pytest.skip(f"tables {missing} are not recorded yet (docs/recorded/NAME): record the README's "
                    f"evaluate.py sweeps with tools/regenerate_docs.py --record")


def _small_root(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "docs" / "recorded").mkdir(parents=True)
    shutil.copytree(SMALL, root / "docs" / "recorded" / "digits-small")
    (root / "README.md").write_text("# title\n\nSome text.\n\n<!-- generated: digits-small -->\nold table\n"
                                    "<!-- end generated: digits-small -->\n\nMore text 1.23e-04.\n")
    return root


def test_regenerate_from_a_small_recording_and_check_catches_edits(tmp_path, capsys):
    root = _small_root(tmp_path)
    with gzip.open(SMALL / "results.json.gz", "rt") as f:
        results = json.load(f)
    assert R.main(["--root", str(root), "--check"]) == 1  # "old table" is stale
    assert R.main(["--root", str(root)]) == 0
    readme = (root / "README.md").read_text()
    assert "old table" not in readme and readme.startswith("# title\n\nSome text.") and "More text 1.23e-04." in readme
    assert results["command"] in readme
    for row in results["summary"]:  # every reported number, formatted independently
        m, s = row["train_loss_mean"], row["train_loss_std"]
        assert (f"{m:.2e} ± {s:.1e}" if m is not None and math.isfinite(m) else "diverged") in readme
    page = (root / "docs" / "results-digits-small.md").read_text()
    assert "## Grid searches" in page and results["command"] in page
    assert R.main(["--root", str(root), "--check"]) == 0
    row = results["summary"][0]
    number = f"{row['train_loss_mean']:.2e}"
    tampered = readme.replace(number, "9.99e-09", 1)
    assert tampered != readme
    (root / "README.md").write_text(tampered)
    assert R.main(["--root", str(root), "--check"]) == 1
    assert "out of date: README.md" in capsys.readouterr().out


def _results(finals_07, finals_05=(4e-4, 5e-4)):
    finals = {}
    for lr, values in ((0.5, finals_05), (0.7, finals_07), (1.0, (math.inf, math.inf))):
        for seed, v in enumerate(values):
            finals[f"sgd_{lr}_s{seed}"] = {"family": "sgd", "param": lr, "seed": seed,
                                           "status": "ok" if math.isfinite(v) else "diverged",
                                           "train_loss": v if math.isfinite(v) else None}
    row = {"method": "SGD", "protocol": "fine grid", "param_name": "lr", "param": 0.5, "seeds": 2,
           "diverged": 0, "errors": 0, "keys": ["sgd_0.5_s0", "sgd_0.5_s1"], "train_loss_mean": 4.5e-4,
           "train_loss_std": 5e-5, "test_loss_mean": 0.07, "test_loss_std": 0.01,
           "test_accuracy_mean": 0.98, "test_accuracy_std": 0.002}
    return {"summary": [row], "finals": finals, "grids": {}, "classification": True}, row


def test_a_pick_next_to_a_setting_with_mixed_seeds_is_flagged_unstable():
    results, row = _results(finals_07=(2.3, 3e-4))  # at 0.7 one seed collapses, one trains
    assert "0.7" in R.edge_of_stability(row, results)
    assert "†" in R.summary_table(results)
    results, row = _results(finals_07=(3e-4, 2.9e-4))  # 0.7 trains on every seed; 1.0 fails on all
    assert R.edge_of_stability(row, results) is None
    assert "†" not in R.summary_table(results)
    results, row = _results(finals_07=(3e-4, 2.9e-4), finals_05=(4e-4, math.inf))  # its own seeds mixed
    assert "own seeds" in R.edge_of_stability(row, results)

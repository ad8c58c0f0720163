"""Smoke tests: every benchmark script runs at a tiny size, prints its figures and writes valid JSON.

They keep the scripts from rotting; the figures themselves are not checked beyond being finite
and positive (timings on a shared CI machine mean nothing at this size).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is not an installed package
from benchmarks import env_overhead, memory, peer_dacbench  # noqa: E402


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_env_overhead_tiny(tmp_path, capsys):
    out = tmp_path / "overhead.json"
    assert env_overhead.main(["--tasks", "digits", "mnist-cnn", "--steps", "2", "--repeats", "2",
                              "--warmup", "1", "--n-train", "200", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "digits" in printed and "mnist-cnn" in printed and "x [" in printed
    data = json.loads(out.read_text())
    assert [r["task"] for r in data["results"]] == ["digits", "mnist-cnn"]
    for res in data["results"]:
        assert set(res["ratio_to_plain"]) == {"floor", "env", "gym"}
        for clock in ("ratio_to_plain", "cpu_ratio_to_plain"):
            for s in res[clock].values():
                assert _finite_positive(s["median"]) and s["min"] <= s["median"] <= s["max"]
        assert all(len(ts) == 2 for ts in res["raw_wall_seconds"].values())


def test_env_overhead_rejects_bad_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        env_overhead.main(["--steps", "0"])
    assert exc.value.code == 2 and "--steps" in capsys.readouterr().err


def test_peer_dacbench_tiny(tmp_path, capsys):
    """Passes with or without dacbench: without it the DACBench side must say why."""
    out = tmp_path / "peer.json"
    assert peer_dacbench.main(["--steps", "1", "--repeats", "1", "--n-train", "500", "--n-test", "50",
                               "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "steps/s" in printed
    data = json.loads(out.read_text())
    assert _finite_positive(data["ours"]["steps_per_second"]["median"])
    # our env passes both checkers on the random-MNIST task
    assert data["ours"]["checkers"]["gymnasium"]["passed"], data["ours"]["checkers"]
    assert data["ours"]["checkers"]["sb3"]["passed"], data["ours"]["checkers"]
    dac = data["dacbench"]
    if dac["available"]:
        assert _finite_positive(dac["steps_per_second"]["median"])
    else:
        assert "dacbench" in dac["reason"] and "DACBench side not measured" in printed


def test_memory_tiny(tmp_path, capsys):
    """One case through the subprocess pipeline (a training run on the random-MNIST task), one in-process."""
    out = tmp_path / "memory.json"
    sizes = ["--n-train", "300", "--n-test", "50", "--steps", "2", "--train-steps", "12", "--episode-length", "2"]  # one policy-search generation
    code = memory.main(["--cases", "train-mnist-cnn", *sizes, "--json", str(out)])
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert code == 0, data["results"]
    assert "peak MiB" in printed and "train-mnist-cnn" in printed
    (train,) = data["results"]
    assert train["case"] == "train-mnist-cnn" and _finite_positive(train["peak_rss_mb"])
    assert train["settings"]["task"] == "benchmarks.memory:mnist_sized_task" and train["settings"]["steps"] == 12

    args = memory.build_parser().parse_args(sizes)
    env = memory.child("env-mnist-cnn", args)
    assert 0 < env["rss_after_data_mb"] <= env["rss_after_steps_mb"] <= env["rss_after_evaluate_mb"] <= env["peak_rss_mb"]


def test_controller_overhead_tiny(tmp_path, capsys):
    from benchmarks import controller_overhead

    out = tmp_path / "controller.json"
    assert controller_overhead.main(["--tasks", "digits", "--steps", "2", "--repeats", "1", "--warmup", "1",
                                     "--json", str(out)]) == 0
    assert "inference" in capsys.readouterr().out
    (res,) = json.loads(out.read_text())["results"]
    assert set(res["ratio_to_plain"]) == {"env", "inference", "learning"}
    assert all(_finite_positive(s["median"]) for s in res["ratio_to_plain"].values())


def test_suite_reference_render_redoes_one_split_and_keeps_the_other(tmp_path):
    """``suite_reference.py render`` with only the train split measured rewrites the train split's
    tables and its part of reference.json, and keeps the recorded test split as it was."""
    from benchmarks import suite_reference

    recorded = json.loads((ROOT / "docs" / "suite" / "reference.json").read_text())
    train = recorded["train"]
    record = {**train, "failed_ratio": 100.0, "command": "python benchmarks/suite_reference.py measure --splits train",
              "per_instance": [{**i, "n_train": 1, "n_test": 1, "n_parameters": 1} for i in train["per_instance"]]}
    out, docs = tmp_path / "out", tmp_path / "docs"
    (out / "train").mkdir(parents=True)
    (out / "train" / "suite.json").write_text(json.dumps(record))
    (out / "train" / "suite.md").write_text("# train split, measured again\n")
    docs.mkdir()
    (docs / "reference.json").write_text(json.dumps({"test": {"marker": "recorded test split"}, "train": {}}))
    assert suite_reference.main(["render", "--out", str(out), "--docs", str(docs)]) == 0
    rendered = json.loads((docs / "reference.json").read_text())
    assert rendered["test"] == {"marker": "recorded test split"}
    assert rendered["train"]["command"] == record["command"]
    assert rendered["train"]["per_instance"][0]["family"] == "linear-regression"
    assert (docs / "reference-train.md").read_text().startswith("# train split, measured again")
    assert not (docs / "reference-test.md").exists() and (docs / "cards" / "digits-cnn.md").is_file()


def test_hand_rules_tiny(tmp_path, monkeypatch, capsys):
    """Normalised SGD by hand: a task's final losses per rule, and a suite split's ratios to the
    recorded tuned SGD (here a reference of one instance); bad flags are one argparse error."""
    from benchmarks import hand_rules

    assert hand_rules.main(["--task", "regression2d", "--caps", "0.01,0.3", "--schedules", "linear", "--seeds", "1",
                            "--updates", "30"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("cap ")]
    assert len(lines) == 2 and all(_finite_positive(float(line.split(": ")[1])) for line in lines)

    recorded = json.loads((ROOT / "docs" / "suite" / "reference.json").read_text())
    one = [i for i in recorded["train"]["per_instance"] if i["family"] == "linear-regression" and i["seed"] == 1000]
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({"train": {"per_instance": one}}))
    monkeypatch.setattr(hand_rules, "REFERENCE", reference)
    assert hand_rules.main(["--suite", "train", "--caps", "0.1", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    ratio = float(out.split("linear-regression@1000: ")[1].split()[0])
    from lrrl.suite import FAILED_RATIO

    assert _finite_positive(ratio) and ratio < FAILED_RATIO  # this rule trains that instance
    assert "geometric mean ratio to tuned SGD" in out and "collapsed 0/1" in out
    with pytest.raises(SystemExit):
        hand_rules.main(["--task", "digits", "--schedules", "cosine"])


def test_user_loop_tiny(capsys):
    """The shipped controller in plain loops on one train instance: every variant's ratio to the
    env's run, and the size variants' ratio to the env at the same batch size and horizon; an
    unknown family is one argparse error."""
    from benchmarks import user_loop

    assert user_loop.main(["pretrained:general", "--split", "train", "--families", "linear-regression",
                           "--instances", "1", "--variants", "loader,horizon/2"]) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0].strip("| "): line.strip("|").split(" | ") for line in out.splitlines()
            if line.startswith("| loader |") or line.startswith("| horizon/2 |")}
    assert set(rows) == {"loader", "horizon/2"}
    assert _finite_positive(float(rows["loader"][1])) and rows["loader"][3].strip() == ""
    assert all(_finite_positive(float(rows["horizon/2"][i])) for i in (1, 2, 3, 4))
    assert rows["horizon/2"][5].strip() == "0/2"  # the loop and the env at half the horizon
    assert "| env horizon/2 |" in out
    with pytest.raises(SystemExit):
        user_loop.main(["pretrained:general", "--families", "no-such-family"])

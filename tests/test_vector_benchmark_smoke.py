"""benchmarks/vector_throughput.py and benchmarks/memory_format.py run at a tiny size and write
valid JSON (figures not checked)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ is not an installed package
from benchmarks import memory_format, vector_throughput  # noqa: E402


def test_vector_throughput_tiny(tmp_path, capsys):
    out = tmp_path / "vt.json"
    assert vector_throughput.main(["--tasks", "regression2d", "--n", "1", "2", "--steps", "2", "--repeats", "2",
                                   "--warmup", "1", "--cases", "vector", "sequential", "plain",
                                   "--memory-cases", "--json", str(out)]) == 0
    assert "regression2d" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert [(r["task"], r["n"]) for r in data["results"]] == [("regression2d", 1), ("regression2d", 2)]
    for res in data["results"]:
        assert set(res["updates_per_second"]) == {"vector", "sequential", "plain"}
        assert set(res["ratio_to_sequential"]) == {"vector", "plain"}
        for s in res["updates_per_second"].values():
            assert math.isfinite(s["median"]) and s["median"] > 0 and s["n"] == 2


def test_vector_throughput_rejects_bad_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        vector_throughput.main(["--n", "0"])
    assert exc.value.code == 2 and "--n" in capsys.readouterr().err


def test_memory_format_tiny(tmp_path, capsys):
    out = tmp_path / "mf.json"
    assert memory_format.main(["--threads", "1", "--repeats", "2", "--cnns", "digits", "--n", "2",
                               "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "channels-last" in printed and "LayerStack" in printed
    data = json.loads(out.read_text())
    assert [(r["group"], r.get("cnn", r.get("part"))) for r in data["results"]] == [
        ("single", "digits"), ("batched", "train"), ("batched", "evaluate")]
    for res in data["results"]:
        assert all(math.isfinite(v) and v > 0 for v in res["median_ms"].values())
    assert set(data["results"][1]["ratio_to_first"]) == {"vmap", "N single, channels-last", "N single, NCHW"}


def test_memory_format_rejects_bad_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        memory_format.main(["--n", "0"])
    assert exc.value.code == 2 and "--n" in capsys.readouterr().err

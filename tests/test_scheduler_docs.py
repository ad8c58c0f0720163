"""docs/scheduler.md: every Python block runs as written (the Lightning one needs the extra)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "scheduler.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_the_doc_has_its_three_recipes():
    assert len(BLOCKS) == 3 and all("ControllerScheduler" in b for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs(index):
    code = BLOCKS[index]
    if "lightning" in code:
        pytest.importorskip("lightning.pytorch", reason='Lightning is not installed (the optional extra: '
                                                        'pip install -e ".[lightning]")')
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*(num_workers|does not have many workers|GPU available|LeafSpec).*")
        exec(compile(code, f"{DOC.name} block {index + 1}", "exec"), namespace)
    scheduler = namespace.get("controller") or namespace.get("scheduler")
    if "trainer" in namespace:
        scheduler = namespace["trainer"].lightning_module.lr_schedulers()
    assert scheduler.last_epoch > 0 and scheduler.get_last_lr()[0] > 0

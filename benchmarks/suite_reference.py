"""Reference scores of the task suite: every reference method on every family, and the cards.

    python benchmarks/suite_reference.py --jobs 2                  # measure (resumable) and render
    python benchmarks/suite_reference.py render                    # re-render docs/suite from OUT

1. ``measure``: :func:`lrrl.suite.run_suite` (what ``evaluate.py --suite`` runs) on the
   ``test`` split, then the ``train`` split, ``--instances`` scoring instances per family, with the
   suite's reference methods (random policy, constant default rates, SGD / Adam / clipped SGD tuned
   per instance, schedule-free SGD and AdamW, Prodigy, D-Adaptation). Runs go to
   ``OUT/<split>/instances/FAMILY@SEED/runs`` (default ``OUT=results/suite-reference``), so an
   interrupted measurement resumes; a rerun on unchanged code only reloads the runs.
2. ``render``: from ``OUT/<split>/suite.json`` alone, writes ``docs/suite/reference-<split>.md``
   (the split's report, ``suite.md``), ``docs/suite/reference.json`` (per family, instance and
   method: final losses, ratios, tuned parameters) and one card per family,
   ``docs/suite/cards/<family>.md`` (what the family draws, the scored instances, and its
   reference table with the command that measured it: the ``evaluate.py --suite`` line that
   :func:`lrrl.suite.run_suite` recorded in ``suite.json``). A split missing from ``OUT`` keeps
   its entry of ``reference.json`` (``measure --splits train`` then ``render`` redoes one split).

``all`` (the default) does both. A controller is scored on the same instances with
``python evaluate.py RUN_DIR --suite test --out DIR``; copying ``OUT/test/instances`` into
``DIR/instances`` first lets it resume every baseline run instead of repeating it.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DOCS = Path(__file__).resolve().parent.parent / "docs" / "suite"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/suite_reference.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("stage", nargs="?", choices=("all", "measure", "render"), default="all")
    p.add_argument("--instances", type=int, default=3, help="scoring instances per family")
    p.add_argument("--train-instances", type=int, default=None,
                   help="scoring instances per train family (default: --instances)")
    p.add_argument("--splits", default="test,train", help="splits to measure, in this order")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--out", default="results/suite-reference", help="where runs go (OUT/<split>/instances/...)")
    p.add_argument("--docs", default=str(DOCS), help="where the tables and cards go")
    p.add_argument("--no-progress", action="store_true")
    return p


def measure(args, command: str) -> dict[str, float]:
    import torch

    from lrrl.suite import SuiteSettings, run_suite

    torch.set_num_threads(1)
    walls = {}
    for split in [s.strip() for s in args.splits.split(",") if s.strip()]:
        t0 = time.perf_counter()
        n = args.train_instances if split == "train" and args.train_instances else args.instances
        settings = SuiteSettings(split=split, instances=n, jobs=args.jobs).validate()
        run_suite(settings, [], Path(args.out) / split, command=command, progress=not args.no_progress)
        walls[split] = time.perf_counter() - t0
        print(f"{split}: {walls[split]:.0f} s", flush=True)
    return walls


# --------------------------------------------------------------------------- rendering
def _r(x) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.3g}"


def _loss(x) -> str:
    return "diverged" if x is None else f"{x:.3g}"


def card(family_name: str, split_record: dict, command: str) -> str:
    """The card of one family: what it is, its id, the scored instances, the reference table."""
    from envs.suite import FAMILIES, SUITE_ENV_IDS

    fam = FAMILIES[family_name]
    env_id = next(i for i, kw in SUITE_ENV_IDS.items() if kw.get("families") == [family_name])
    insts = [i for i in split_record["per_instance"] if i["family"] == family_name]
    parts = [f"# Task family `{family_name}` ({fam.split} split)", "",
             f"{fam.kind}. Id: `{env_id}` (`gymnasium.make(\"envs:{env_id}\")`: a new instance of this family "
             f"every episode, instance seeds from the {'train' if fam.split == 'train' else 'scoring'} range); "
             f"one instance as a task: `envs.suite:{family_name}@SEED`.", ""]
    parts += ["## Scored instances", "",
              "| instance | updates | batch | train / test examples | parameters | loss | drawn |",
              "|---|---|---|---|---|---|---|"]
    for i in insts:
        m = i["meta"]
        parts.append(f"| {family_name}@{i['seed']} | {m['horizon']} | {m['batch_size']} | {i['n_train']} / "
                     f"{i['n_test']} | {i['n_parameters']} | {m['loss']} | `{json.dumps(m['params'])}` |")
    parts += ["", "## Reference scores", "",
              f"Ratio = final full training loss / that of SGD tuned on the fine grid for the same instance "
              f"(the primary seed is the instance seed); a collapsed run (diverged, or final >= 0.9 x initial "
              f"training loss) scores {split_record['failed_ratio']:g}. Recorded with:", "",
              f"    {command}", ""]
    seeds = [i["seed"] for i in insts]
    head = ["method", "geo. mean ratio"] + [f"@{s}: final train loss (ratio)" for s in seeds] + [
        "final test loss, mean", "collapsed"]
    parts += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in split_record["methods"]:
        rows = [i["methods"].get(m) for i in insts]
        if not any(rows):
            continue
        ratios = [r["ratio_train"] for r in rows if r and r.get("ratio_train") is not None]
        geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios)) if ratios else math.nan
        cells = [m, _r(geo)]
        for r in rows:
            if not r:
                cells.append("")
                continue
            tuned = r.get("tuned")
            tuned_txt = "" if tuned is None else (" at " + (", ".join(f"{v:.3g}" for v in tuned)
                                                            if isinstance(tuned, list) else f"{tuned:.3g}"))
            cells.append(f"{_loss(r.get('train_loss'))} ({_r(r.get('ratio_train'))}){tuned_txt}")
        tests = [r["test_loss"] for r in rows if r and r.get("test_loss") is not None]
        cells.append(_r(sum(tests) / len(tests)) if tests else "—")
        cells.append(f"{sum(bool(r and r.get('collapsed')) for r in rows)}/{len(rows)}")
        parts.append("| " + " | ".join(cells) + " |")
    parts += ["", "After 'at': the tuned rate (SGD, Adam), the tuned rate and max_norm (clipped SGD), or the "
              "published default lr (the learning-rate-free optimizers). 'diverged': the run ended early on "
              "divergence. Wall time of the split's measurement: docs/suite/README.md.", ""]
    return "\n".join(parts)


def render(args, command: str) -> None:
    from lrrl.suite import profile_figure, scores_from_instances

    docs = Path(args.docs)
    (docs / "cards").mkdir(parents=True, exist_ok=True)
    # a split that OUT does not hold keeps what reference.json recorded for it (a family changed
    # in one split needs only that split measured again)
    recorded = docs / "reference.json"
    compact = json.loads(recorded.read_text()) if recorded.is_file() else {}
    for split in ("test", "train"):
        path = Path(args.out) / split / "suite.json"
        if not path.is_file():
            kept = "keeping its recorded scores" if split in compact else "measure it first"
            print(f"{path} missing: {kept}", file=sys.stderr)
            continue
        record = json.loads(path.read_text())
        text = (Path(args.out) / split / "suite.md").read_text()
        scores = scores_from_instances(record["per_instance"], record["methods"])
        figure = profile_figure(scores, docs / f"reference-{split}.png",
                                f"Performance profiles, {split} split ({len(record['per_instance'])} instances)")
        if figure is not None and "## Figure" not in text:
            text = text.rstrip() + f"\n\n## Figure\n\n![performance profiles]({figure.name})\n"
        (docs / f"reference-{split}.md").write_text(text)
        for fam in record["families"]:
            (docs / "cards" / f"{fam}.md").write_text(card(fam, record, record["command"]))
        compact[split] = {k: record[k] for k in ("command", "families", "instances", "methods", "aggregate_train",
                                                 "aggregate_test", "per_family", "wall_time", "runs")}
        compact[split]["per_instance"] = [{"family": i["family"], "seed": i["seed"], "meta": i["meta"],
                                           "methods": i["methods"]} for i in record["per_instance"]]
    compact["rendered_by"] = command
    (docs / "reference.json").write_text(json.dumps(compact, indent=1, default=str))
    print(f"wrote {docs}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    words = sys.argv[1:] if argv is None else list(argv)
    command = "python benchmarks/suite_reference.py " + " ".join(shlex.quote(w) for w in words)
    if args.stage in ("all", "measure"):
        measure(args, command)
    if args.stage in ("all", "render"):
        render(args, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())

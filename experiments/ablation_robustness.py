"""Ablation of the domain-robust recipe: what each part does on BRISC, an external set and re-encodings.

    python experiments/ablation_robustness.py --data ../shared/data/brisc2025 \
        --external ../shared/data/figshare_br35h --out reports/benchmarks/robustness_ablation

Every arm is a frozen-feature Router (the ``quick`` profile's EfficientNet-Lite0 with offline ImageNet
weights, linear heads) trained on the same BRISC training rows, differing only in its preprocessing and
augmentation. The arm is *chosen* on BRISC validation rows alone (clean accuracy and the worst accuracy
under the re-encoding perturbations, averaged); test, external and perturbation columns are reported
for every arm but never used to choose. Re-running with the same ``--out`` skips finished arms.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hierarchy.data import PERTURBATIONS, PreprocessConfig, index_dataset, train_val_split
from hierarchy.fileio import read_json, write_json
from hierarchy.logs import configure_logging
from hierarchy.provenance import run_record
from hierarchy.reports.tables import markdown_table
from hierarchy.routing import Router
from hierarchy.training import TrainConfig

logger = logging.getLogger("ablation")

ROUTES = ("flat", "hierarchical", "ensemble")
SELECTION_ROUTE = "ensemble"
# name -> (PreprocessConfig settings, feature_views, description)
ARMS: dict[str, tuple[dict[str, Any], int, str]] = {
    "light": ({"augment": "light"}, 2, "previous recipe: light augmentation, per-image intensity scaling"),
    "robust": ({"augment": "robust"}, 2, "+ scanner/archive shifts, intensity remapping, dihedral flips"),
    "robust_head": ({"augment": "robust", "intensity_scaling": "head"}, 2,
                    "+ intensity percentiles inside the head mask"),
    "robust_head_clahe": ({"augment": "robust", "intensity_scaling": "head", "clahe": True}, 2, "+ CLAHE"),
    "robust_head_views4": ({"augment": "robust", "intensity_scaling": "head"}, 4,
                           "robust_head with 4 feature views instead of 2"),
}


def _accuracy(table: pd.DataFrame) -> dict[str, float]:
    correct = table["pred_label"] == table["true_label"]
    return {route: float(v) for route, v in correct.groupby(table["route"]).mean().items()}


def _detection(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per route: no-tumour recall and tumour false-negative rate (tumour called no_tumor)."""
    out = {}
    for route, rows in table.groupby("route"):
        normal = rows["true_label"] == "no_tumor"
        tumour = ~normal
        out[route] = {
            "no_tumor_recall": float((rows.loc[normal, "pred_label"] == "no_tumor").mean()) if normal.any() else None,
            "tumor_fnr": float((rows.loc[tumour, "pred_label"] == "no_tumor").mean()) if tumour.any() else None,
        }
    return out


def run_arm(name: str, train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame,
            externals: dict[str, pd.DataFrame], work: Path, image_size: int) -> dict[str, Any]:
    """Fit one arm's Router and evaluate it everywhere; the result is cached in ``work/<name>.json``."""
    path = work / f"{name}.json"
    if path.exists():
        return read_json(path)
    settings, views, _ = ARMS[name]
    preprocess = PreprocessConfig(image_size=image_size, **settings)
    router = Router(mode="frozen", feature_views=views, preprocess=preprocess, train=TrainConfig(seed=0))
    router.fit(train, val, out_dir=work / name, resume=True)
    result: dict[str, Any] = {"arm": name, "preprocess": preprocess.to_dict(), "feature_views": views}
    result["val"] = _accuracy(router.predict_routes(val, ROUTES))
    result["val_perturbed"] = {p: _accuracy(router.predict_routes(val, ROUTES, perturbation=p)) for p in PERTURBATIONS}
    result["test"] = _accuracy(router.predict_routes(test, ROUTES))
    result["test_perturbed"] = {p: _accuracy(router.predict_routes(test, ROUTES, perturbation=p))
                                for p in PERTURBATIONS}
    result["external"] = {}
    for source, frame in externals.items():
        table = router.predict_routes(frame, ROUTES)
        result["external"][source] = {"accuracy": _accuracy(table), "detection": _detection(table)}
    result["selection_score"] = (result["val"][SELECTION_ROUTE]
                                 + min(v[SELECTION_ROUTE] for v in result["val_perturbed"].values())) / 2
    write_json(path, result)
    return result


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def write_tables(results: list[dict[str, Any]], out: Path, record: dict[str, Any], *, dataset: str,
                 image_size: int) -> Path:
    """``ablation.md`` (one table per route) and ``ablation.json`` beside it."""
    chosen = max(results, key=lambda r: r["selection_score"])["arm"]
    externals = sorted({s for r in results for s in r["external"]})
    lines = ["# Domain-robust recipe: ablation", "",
             f"Frozen EfficientNet-Lite0 (offline ImageNet weights), linear heads, {image_size} px, one seed; every "
             f"arm trained on the same {dataset} training rows. **Chosen on {dataset} validation rows only**: the "
             "score is the mean of clean validation accuracy and the worst validation accuracy under the "
             f"re-encoding perturbations ({', '.join(PERTURBATIONS)}), {SELECTION_ROUTE} route. Test, "
             "external and perturbation columns are shown for every arm and were never used to choose; "
             "nothing was trained or tuned on the external sets.", "",
             f"Chosen arm: **{chosen}**.", "",
             "Arms: " + "; ".join(f"`{n}`: {ARMS[n][2]}" for n in (r["arm"] for r in results)) + ".", ""]
    for route in ROUTES:
        headers = ["arm", f"selection score ({SELECTION_ROUTE})", "val", f"{dataset} test", "worst perturbed test (drop)"]
        for source in externals:
            headers += [f"{source} acc", f"{source} no-tumour recall", f"{source} tumour FNR"]
        rows = []
        for r in results:
            worst = min(v[route] for v in r["test_perturbed"].values())
            row = [r["arm"] + (" (chosen)" if r["arm"] == chosen else ""), _pct(r["selection_score"]),
                   _pct(r["val"][route]), _pct(r["test"][route]),
                   f"{_pct(worst)} ({100 * (r['test'][route] - worst):+.1f})"]
            for source in externals:
                ext = r["external"].get(source)
                det = ext["detection"][route] if ext else {}
                row += [_pct(ext["accuracy"][route]) if ext else "n/a", _pct(det.get("no_tumor_recall")),
                        _pct(det.get("tumor_fnr"))]
            rows.append(row)
        lines += [f"## Route: {route}", "", markdown_table(headers, rows), ""]
    lines += ["Accuracies in percent. Reproduce: `" + record["command"] + "`.", ""]
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "ablation.json", {"chosen": chosen, "arms": results, "record": record})
    path = out / "ablation.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="BRISC 2025 root (train split used; test only evaluated)")
    parser.add_argument("--external", action="append", default=[], metavar="ROOT", help="external test set")
    parser.add_argument("--out", required=True, help="folder for ablation.md/json; work/ inside is git-ignored")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args(argv)
    configure_logging()
    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    frame = index_dataset(args.data)
    train_all = frame[frame["split"] == "train"].reset_index(drop=True)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    train, val = train_val_split(train_all, val_fraction=0.15, seed=0)  # the experiment's split
    externals = {Path(root).name: index_dataset(root) for root in args.external}
    results = []
    for name in args.arms:
        logger.info("arm %s: %s", name, ARMS[name][2])
        results.append(run_arm(name, train, val, test, externals, work, args.image_size))
    command = " ".join(["python", "experiments/ablation_robustness.py",
                        *(sys.argv[1:] if argv is None else argv)])
    record = run_record({"arms": args.arms, "image_size": args.image_size}, seed=0,
                        frames={"train": train, "val": val, "test": test, **externals})
    record["command"] = command
    print(write_tables(results, out, record, dataset=Path(args.data).name, image_size=args.image_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())

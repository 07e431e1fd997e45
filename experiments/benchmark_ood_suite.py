"""Graded out-of-distribution suite and healthy-scanner evaluation of a saved Router.

    python experiments/benchmark_ood_suite.py --router RUN --data ../shared/data/brisc2025 \
        --scanner ../shared/data/scanner_samples --external ../shared/data/figshare_br35h \
        --out reports/benchmarks/ood_suite

Writes ``report.md`` and ``summary.json`` under ``--out`` (image galleries under ``gallery/``, git-ignored);
the Router's passes are cached under ``--out``/work/router-<checksum>-seed<seed> (git-ignored), so a re-run of the same
Router and seed resumes and another Router never reuses them. See
``hierarchy.experiment.ood_suite`` for the tiers, scorers and the rule that chooses a scorer (valid acquisition
shifts and synthetic corruptions of BRISC validation images only). With ``--folds work/folds.csv --fold K`` (the
fold list of the experiment that trained a cross-validated Router, fold K's model) the validation rows are fold
K's and the scorers are fitted on the other folds' rows, so that the choice is made on rows the Router never saw.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from hierarchy.data import index_dataset
from hierarchy.data.image_io import load_image
from hierarchy.data.scanner_index import scanner_rows
from hierarchy.data.valid_shift import valid_shifts
from hierarchy.experiment.ablation import study_frames
from hierarchy.experiment.model_runs import saved_fold_run
from hierarchy.experiment.ood_suite import (
    CONFIDENCES,
    CORRUPTIONS,
    MAX_VALID_SHIFT_REFERRED,
    MIN_CORRUPTION_AUROC,
    Scorers,
    SuiteSet,
    auroc,
    bundled_photos,
    choose_scorer,
    corrupt,
    healthy_table,
    run_pass,
    selective,
    synthetic_pictures,
)
from hierarchy.fileio import atomic_write_text, read_json, sha256_file, write_json
from hierarchy.logs import configure_logging
from hierarchy.predictions import HEADER_ROUTE, series_predictions
from hierarchy.provenance import git_commit
from hierarchy.reports.tables import markdown_table
from hierarchy.routing import Router

log = logging.getLogger("ood_suite")

PYDICOM_NEAR = ("MR_small.dcm", "examples_overlay.dcm")  # MR, not brain T1 (a small MR crop, an abdomen)
PYDICOM_FAR = {"CT_small.dcm": "CT", "693_J2KI.dcm": "CT", "J2K_pixelrep_mismatch.dcm": "CT",
               "JPEG2000.dcm": "NM", "JPGExtended.dcm": "NM", "examples_rgb_color.dcm": "US",
               "examples_palette.dcm": "US", "examples_ybr_color.dcm": "US"}


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).reset_index(drop=True)


def _scanner_sets(scanner: Path, limit: int | None, sample: int | None) -> dict[str, tuple[str, pd.DataFrame]]:
    """name -> (tier, index frame) of the scanner_samples parts (``sample`` healthy slices of each at most)."""
    dicom = scanner / "dicom"
    t1 = _frame(scanner_rows(dicom / "t1_mprage", scanner, axes="all", label="no_tumor"))
    ixi = _frame([r for p in sorted((scanner / "nifti").glob("*.nii.gz"))
                  for r in scanner_rows(p, scanner, axes="all", label="no_tumor")])
    magnitude = _frame(scanner_rows(dicom / "field_map_magnitude", scanner, label="no_tumor"))
    phase = _frame(scanner_rows(dicom / "field_map_phase", scanner))
    sets = {"t1_mprage": ("shifted_valid", t1[t1["brain"]]), "ixi_t1": ("shifted_valid", ixi[ixi["brain"]]),
            "field_map_magnitude": ("shifted_valid", magnitude[magnitude["brain"]]),
            "field_map_phase": ("near_ood", phase)}
    return {k: (tier, _limit(frame, sample if tier == "shifted_valid" and sample else limit))
            for k, (tier, frame) in sets.items()}


def _pydicom_frame(names, base: Path) -> pd.DataFrame:
    return _frame([dict(r, kind=kind) for name, kind in names for r in scanner_rows(base / name, base)])


def _limit(frame: pd.DataFrame, limit: int | None, seed: int = 0) -> pd.DataFrame:
    if limit is None or len(frame) <= limit:
        return frame.reset_index(drop=True)
    return frame.sample(limit, random_state=seed).sort_index().reset_index(drop=True)


def _shifted(name: str, tier: str, frame: pd.DataFrame, seed: int, references: list) -> SuiteSet:
    """One valid acquisition shift of each image of ``frame`` (:func:`valid_shifts` seeded ``seed``)."""
    return SuiteSet(name, tier, valid_shifts(frame["path"].tolist(), seed, references),
                    [f"shift{seed}/{i}" for i in frame["id"]])


def study_rows(args) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training (fit), validation (choice) and test rows: with ``--folds``, the other folds' rows and fold
    ``--fold`` of repeat ``--repeat`` (the Router's own training and validation rows when it is that fold's
    model); without, the Router's train/validation split of the train split (its ``val_fraction``)."""
    if not args.folds:
        return study_frames(args.data, args.val_fraction)
    frame = index_dataset(args.data)
    run = saved_fold_run(frame[frame["split"] == "train"], args.folds, args.fold, args.repeat)
    return run.train, run.val, frame[frame["split"] == "test"].reset_index(drop=True)


def build_sets(args, train: pd.DataFrame, val: pd.DataFrame,
               test: pd.DataFrame) -> tuple[dict[str, SuiteSet], pd.DataFrame, pd.DataFrame]:
    """Every set of the suite (by name) from the training, validation and test rows of :func:`study_rows`,
    and the training and validation frames sampled from them."""
    from pydicom.data import get_testdata_file

    train_sample = _limit(train, args.train_sample, args.seed)
    val = _limit(val, args.val_sample or args.limit, args.seed)
    sets = {"train": SuiteSet("train", "fit", train_sample), "val": SuiteSet("val", "choice", val),
            "brisc_test": SuiteSet("brisc_test", "in_distribution", _limit(test, args.test_sample or args.limit,
                                                                          args.seed))}
    # valid shifts: one of each fitted training row (fit) and fresh draws on validation rows (choice); seeds
    # apart from each other and from the corruptions'; histograms matched to other training images
    references = [load_image(p) for p in train.sample(min(16, len(train)), random_state=args.seed + 3)["path"]]
    sets["train_shift"] = _shifted("train_shift", "fit", train_sample.head(args.shift_sample), args.seed + 1,
                                   references)
    sets["val_shift"] = _shifted("val_shift", "choice", val, args.seed + 2, references)
    rng = np.random.default_rng(args.seed)
    chosen = val.sample(min(args.corrupt_sample, len(val)), random_state=args.seed)
    for kind in CORRUPTIONS:
        images = [corrupt(load_image(p), kind, rng) for p in chosen["path"]]
        sets[f"val_{kind}"] = SuiteSet(f"val_{kind}", "corruption", images,
                                       [f"{kind}/{i}" for i in chosen["id"]])
    for name, (tier, frame) in _scanner_sets(Path(args.scanner), args.limit, args.scanner_sample).items():
        sets[name] = SuiteSet(name, tier, frame)
    base = Path(get_testdata_file("MR_small.dcm")).parent
    sets["pydicom_mr"] = SuiteSet("pydicom_mr", "near_ood", _pydicom_frame([(n, "MR") for n in PYDICOM_NEAR], base))
    sets["pydicom_other_modalities"] = SuiteSet("pydicom_other_modalities", "far_ood",
                                                _pydicom_frame(PYDICOM_FAR.items(), base))
    photos = bundled_photos()
    sets["photos"] = SuiteSet("photos", "far_ood", [im for _, im in photos], [n for n, _ in photos])
    pictures = synthetic_pictures(args.seed)
    sets["blank_noise_text"] = SuiteSet("blank_noise_text", "far_ood", [im for _, im in pictures],
                                        [n for n, _ in pictures])
    for root in args.external:
        name = Path(root).name
        sets[name] = SuiteSet(name, "external", _limit(index_dataset(root), args.external_sample or args.limit,
                                                        args.seed))
    empty = [name for name, suite_set in sets.items() if not len(suite_set.inputs)]
    if {"train", "val", "brisc_test"} & set(empty):
        raise ValueError(f"no images in {sorted(empty)}")
    for name in empty:
        log.warning("leaving out %s: no images (no slice passed the brain rule?)", name)
    return {k: v for k, v in sets.items() if k not in empty}, train_sample, val


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--router", required=True, help="folder of a saved Router (mode joint: one shared trunk)")
    parser.add_argument("--data", required=True, help="BRISC-layout root (train split: fit rows; test: tier 0)")
    parser.add_argument("--scanner", required=True, help="scanner_samples root")
    parser.add_argument("--external", action="append", default=[], help="labelled external set (repeatable)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--q", type=float, default=0.95, help="refer_atypical quantile")
    parser.add_argument("--train-sample", type=int, default=2000, help="training rows the new scorers fit on")
    parser.add_argument("--shift-sample", type=int,
                        help="fitted training rows that get a valid shift for the *_shift scorers (default: all)")
    parser.add_argument("--corrupt-sample", type=int, default=150, help="validation images per corruption")
    parser.add_argument("--val-sample", type=int, help="validation rows (default: all)")
    parser.add_argument("--external-sample", type=int, help="rows of each external set (default: all)")
    parser.add_argument("--test-sample", type=int, help="BRISC test rows (default: all)")
    parser.add_argument("--scanner-sample", type=int, help="healthy slices of each scanner set (default: all)")
    parser.add_argument("--limit", type=int, help="at most this many images per set (tests)")
    parser.add_argument("--folds", help="fold list of the experiment that trained the Router (work/folds.csv): "
                        "validation rows = fold --fold, fit rows = the other folds' rows")
    parser.add_argument("--fold", type=int, help="the Router's validation fold in --folds")
    parser.add_argument("--repeat", type=int, default=0, help="repeat of --folds (default 0)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (args.folds is None) != (args.fold is None):
        parser.error("--folds and --fold go together")
    configure_logging(fmt="%(asctime)s %(message)s")
    out = Path(args.out)
    router = Router.load(args.router)
    identity = router_identity(args.router)
    # passes depend on the Router and on the seed that draws the shifts and corruptions, not only on the ids
    work = out / "work" / f"router-{str(identity['checksum'])[:12]}-seed{args.seed}"
    args.val_fraction = router.val_fraction
    rows = study_rows(args)
    folds = None if args.folds is None else {
        "file": args.folds, "sha256": sha256_file(args.folds), "repeat": args.repeat, "fold": args.fold,
        "fit_rows": len(rows[0]), "validation_rows": len(rows[1])}
    if folds and identity["train_images"] not in (None, folds["fit_rows"]):
        log.warning("the Router trained on %s images, fold %d's other folds hold %d rows: another fold's model?",
                    identity["train_images"], args.fold, folds["fit_rows"])
    sets, train, val = build_sets(args, *rows)
    runs = {}
    for name, suite_set in sets.items():
        log.info("pass: %s (%d images)", name, len(suite_set.inputs))
        runs[name] = run_pass(router, suite_set, work)
    scorers = Scorers(router, runs["train"], train["label"].tolist(), runs["train_shift"])
    names = scorers.names
    scores = {s: {k: scorers.score(s, r) for k, r in runs.items()} for s in names}
    thresholds = {s: scorers.threshold(s, args.q) for s in names}

    # choice of scorer, on validation images only (choose_scorer): corruption AUROC floor, valid shifts
    # referred, then the highest mean AUROC of clean validation images against their corruptions
    choice = {s: {k: auroc(scores[s]["val"], scores[s][f"val_{k}"]) for k in CORRUPTIONS} for s in names}
    choice_mean = {s: float(np.mean(list(v.values()))) for s, v in choice.items()}
    shift_referred = {s: float((scores[s]["val_shift"] > thresholds[s]).mean()) for s in names}
    chosen = choose_scorer(choice_mean, shift_referred)
    log.info("scorer chosen on validation images: %s", chosen)

    tiers = {}
    for name, suite_set in sets.items():
        if suite_set.tier in ("fit", "choice", "corruption"):
            continue
        tiers[name] = {"tier": suite_set.tier, "n": len(runs[name].route("hierarchical")),
                       **{s: {"auroc": None if name == "brisc_test" else auroc(scores[s]["brisc_test"], scores[s][name]),
                              "referred": float((scores[s][name] > thresholds[s]).mean())} for s in names}}
    by_tier = {}
    for tier in ("shifted_valid", "near_ood", "far_ood"):
        members = [n for n, t in tiers.items() if t["tier"] == tier]
        by_tier[tier] = {"n": sum(tiers[n]["n"] for n in members), "sets": members,
                         **{s: {"auroc": auroc(scores[s]["brisc_test"], np.concatenate([scores[s][n] for n in members])),
                                "referred": float(np.mean(np.concatenate([scores[s][n] > thresholds[s]
                                                                          for n in members])))} for s in names}}

    # selective prediction, confidence chosen on validation
    atypical = {k: scores[chosen][k] > thresholds[chosen] for k in runs}
    healthy = [n for n, t in tiers.items() if t["tier"] == "shifted_valid"]
    labels = {n: "no_tumor" for n in healthy}
    selective_sets = ["val", "brisc_test", *[n for n, t in tiers.items() if t["tier"] == "external"], *healthy]
    aurc = selective({n: runs[n] for n in selective_sets}, router.classes_, atypical, labels)
    val_row = aurc[aurc["set"] == "val"].iloc[0]
    chosen_conf = min(CONFIDENCES, key=lambda c: (val_row[c], CONFIDENCES.index(c)))

    # healthy brains from other scanners
    healthy_rows, header_rows, series_rows = [], [], []
    for name in healthy:
        for scorer in ("mahalanobis", chosen):
            table = healthy_table(runs[name], scores[scorer][name] > thresholds[scorer])
            healthy_rows.append(table.assign(set=name, scorer=scorer))
        for route in ("hierarchical", HEADER_ROUTE):
            part = runs[name].route(route)
            if len(part):
                header_rows.append({"set": name, "route": route, "n": len(part),
                                    "no_tumor": float((part["pred_label"] == "no_tumor").mean())})
        series = series_predictions(runs[name].table.assign(
            series=runs[name].table["series"].astype(str) + " " + runs[name].table["header_plane"].astype(str)),
            router.classes_)
        series_rows.append(series[series["route"] == "hierarchical"].assign(set=name))
    healthy_frame = pd.concat(healthy_rows, ignore_index=True)
    header_frame = pd.DataFrame(header_rows)
    series_frame = pd.concat(series_rows, ignore_index=True)
    plane_rows = []
    for name in [n for n in (*healthy, "field_map_phase", "pydicom_mr", "pydicom_other_modalities") if n in runs]:
        part = runs[name].route("hierarchical")
        part = part[part["plane_source"] == "header"]
        if len(part):
            plane_rows.append({"set": name, "n": len(part),
                               "plane_accuracy": float((part["pred_plane"] == part["header_plane"]).mean())})
    plane_frame = pd.DataFrame(plane_rows)

    targets = _targets(runs, by_tier, tiers, aurc, chosen, chosen_conf, atypical, plane_frame,
                       {s: {k: scores[s][k] > thresholds[s] for k in runs} for s in ("mahalanobis", chosen)})
    _gallery(runs, healthy, atypical, out / "gallery")
    summary = {"router": Path(args.router).name, "router_identity": identity,
               "git_commit": git_commit(Path(__file__).resolve().parent), "folds": folds, "q": args.q,
               "thresholds": thresholds, "chosen_scorer": chosen,
               "choice_auroc": choice, "choice_mean_auroc": choice_mean, "valid_shift_referred": shift_referred,
               "sets": tiers, "tiers": by_tier,
               "selective_aurc": aurc.to_dict(orient="records"), "chosen_confidence": chosen_conf,
               "targets": targets, "healthy": healthy_frame.to_dict(orient="records"), "header_route": header_rows,
               "plane_against_header": plane_rows, "series": series_frame.to_dict(orient="records"),
               "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
               .replace(str(args.router), "ROUTER")}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    atomic_write_text(out / "report.md", _report(summary, healthy_frame, plane_frame, header_frame, series_frame,
                                                 aurc, chosen, chosen_conf, args))
    print(out / "report.md")
    return 0


def _targets(runs, by_tier, sets, aurc, chosen, chosen_conf, atypical, planes, referred) -> list[dict]:
    """The issue's targets, measured for the Router's own score and for the chosen one."""
    rows = []
    for scorer in dict.fromkeys(("mahalanobis", chosen)):
        far = by_tier.get("far_ood", {}).get(scorer)
        if far:
            rows.append({"target": "far-OOD AUROC >= 0.99", "scorer": scorer, "value": far["auroc"],
                         "met": far["auroc"] >= 0.99})
            rows.append({"target": "far-OOD referred >= 95%", "scorer": scorer, "value": far["referred"],
                         "met": far["referred"] >= 0.95})
        if "field_map_phase" in sets:
            value = sets["field_map_phase"][scorer]["auroc"]
            rows.append({"target": "phase images AUROC >= 0.95", "scorer": scorer, "value": value, "met": value >= 0.95})
        t1 = [n for n in ("t1_mprage", "ixi_t1") if n in runs]
        if t1:
            called = np.concatenate([runs[n].route("hierarchical")["pred_label"].to_numpy() == "no_tumor" for n in t1])
            ref = np.concatenate([referred[scorer][n] for n in t1])
            rows.append({"target": "healthy T1 brain slices no tumour or referred >= 95%", "scorer": scorer,
                         "value": float((called | ref).mean()), "met": bool((called | ref).mean() >= 0.95)})
            rows.append({"target": "healthy T1 brain slices referred <= 10%", "scorer": scorer,
                         "value": float(ref.mean()), "met": bool(ref.mean() <= 0.10)})
    healthy = planes[planes["set"].isin(["t1_mprage", "ixi_t1", "field_map_magnitude"])]
    if len(healthy):
        value = float((healthy["plane_accuracy"] * healthy["n"]).sum() / healthy["n"].sum())
        rows.append({"target": "plane accuracy against the header >= 99% (healthy MR)", "scorer": "-", "value": value,
                     "met": value >= 0.99})
    test = aurc[aurc["set"] == "brisc_test"].iloc[0]
    rows.append({"target": f"AURC on BRISC test below softmax ({test['softmax']:.5f})", "scorer": chosen_conf,
                 "value": float(test[chosen_conf]), "met": bool(test[chosen_conf] < test["softmax"])})
    return rows


def _gallery(runs, healthy, atypical, folder: Path, limit: int = 24) -> None:
    """Healthy slices called a tumour and not referred, as one PNG montage (stays local: git-ignored)."""
    tiles = []
    for name in healthy:
        part = runs[name].route("hierarchical")
        wrong = part[(part["pred_label"] != "no_tumor") & ~atypical[name]]
        for source in wrong["path"].head(limit - len(tiles)):
            tiles.append(np.asarray(load_image(source).resize((128, 128))))
    if not tiles:
        return
    folder.mkdir(parents=True, exist_ok=True)
    while len(tiles) % 6:
        tiles.append(np.zeros((128, 128), dtype=np.uint8))
    rows = [np.hstack(tiles[i:i + 6]) for i in range(0, len(tiles), 6)]
    Image.fromarray(np.vstack(rows)).save(folder / "healthy_called_tumour.png")


def router_identity(folder: str | Path) -> dict:
    """What identifies a saved Router: its save's checksum and generation, when and from which commit it was
    trained, and how many training rows it saw."""
    manifest = read_json(Path(folder) / "router.json", what="Router manifest")
    record = manifest.get("record", {})
    return {"checksum": manifest.get("checksum"), "generation": manifest.get("generation"),
            "created": record.get("created"), "git_commit": record.get("git_commit"),
            "train_images": record.get("data", {}).get("train", {}).get("n_images")}


def _identity(identity: dict) -> str:
    return (f"checksum {str(identity['checksum'])[:12]}, save {identity['generation']}, trained "
            f"{identity['created']} at commit {str(identity['git_commit'])[:7]} on {identity['train_images']} "
            "training images")


def _rows_line(folds: dict | None, args) -> str:
    """Which BRISC rows the scorers are fitted on and chosen on."""
    if folds is None:
        return ("Rows: the Router's own train/validation split of BRISC's train split "
                f"(grouped, val_fraction {args.val_fraction}, seed 0).")
    return (f"Rows: fold {folds['fold']} of repeat {folds['repeat']} of `{folds['file']}` (sha256 "
            f"`{folds['sha256']}`): validation rows (choice of scorer and confidence) = that fold's "
            f"{folds['validation_rows']} rows, fit rows = the other folds' {folds['fit_rows']} rows, the Router's "
            "training rows when it is that fold's model.")


def _md(frame: pd.DataFrame) -> str:
    return markdown_table(list(frame.columns), frame.itertuples(index=False)) if len(frame) else "(none)\n"


def _report(summary, healthy, planes, header, series, aurc, chosen, chosen_conf, args) -> str:
    names = list(summary["choice_mean_auroc"])
    q = summary["q"]
    limit, floor = f"{MAX_VALID_SHIFT_REFERRED:.0%}", f"{MIN_CORRUPTION_AUROC:.2f}"
    lines = [f"# Graded out-of-distribution suite (refer_atypical = {q})", "",
             f"Router: `{Path(summary['router']).name}` ({_identity(summary['router_identity'])}). "
             f"Command: `{summary['command']}`, from commit `{summary['git_commit']}`.", "",
             _rows_line(summary["folds"], args), "",
             "Scores (higher: more atypical), all fitted on BRISC training rows only: `mahalanobis` (the Router's "
             "own, last-layer features), `energy` (flat model logits), `depth_means` and `depth_stats` "
             "(Mahalanobis at every stage of the network and the pooled features, channel means or means and "
             f"standard deviations, summed as z-scores; fitted on {args.train_sample} training rows). "
             "`mahalanobis_shift` (last-layer features, as the Router's own), `depth_means_shift` and `knn_shift` "
             "(distance to the 10th nearest neighbour, last-layer features; Sun et al. 2022) fit their typical set "
             f"on the same {args.train_sample} training rows *and* one valid acquisition shift of "
             f"{'each' if args.shift_sample is None else f'the first {args.shift_sample}'} "
             "(`hierarchy.data.valid_shift`: lower resolution, isotropic or along one axis; histogram matched to "
             "another training image; small rotation, zoom and shift; gamma, brightness, contrast, bias field, "
             "mild blur; Rician noise), an image and its shift in one fold of the out-of-fold reference scores. "
             f"Referral threshold: the {q}-quantile of each score on its fitted rows (out of fold).", "",
             "## Choice of scorer (BRISC validation images only; rule fixed before any result)", "",
             f"Rule: among the scorers whose mean AUROC of clean validation images against their synthetic "
             "corruptions (noise, inverted contrast, wrapped intensities, shuffled tiles, heavy blur) reaches "
             f"{floor} and that refer at most {limit} of the *valid-shift tier* (one fresh valid acquisition shift "
             "of each validation image, drawn with another seed than the fitted shifts), the one with the highest "
             f"mean AUROC; if none does both, the one reaching {floor} that refers the fewest valid shifts; if "
             f"none reaches {floor}, the same over every scorer. The suite below is not used for it.", ""]
    choice = pd.DataFrame([{"scorer": s, **summary["choice_auroc"][s], "mean": summary["choice_mean_auroc"][s],
                            "valid shift referred": summary["valid_shift_referred"][s]} for s in names])
    lines += [_md(choice), "", f"Chosen: **{chosen}**.", "",
              "## Targets", "", _md(pd.DataFrame(summary["targets"])), "",
              "## AUROC against BRISC test and fraction referred, per tier", ""]
    for key, what in (("auroc", "AUROC against BRISC test"), ("referred", "Fraction referred")):
        rows = [{"tier": t, "n": v["n"], **{s: v[s][key] for s in names}} for t, v in summary["tiers"].items()]
        lines += [f"{what}, per tier:", "", _md(pd.DataFrame(rows)), ""]
    for key, what in (("auroc", "AUROC against BRISC test"), ("referred", "Fraction referred")):
        rows = [{"set": n, "tier": v["tier"], "n": v["n"], **{s: v[s][key] for s in names}}
                for n, v in summary["sets"].items()]
        lines += [f"{what}, per set:", "", _md(pd.DataFrame(rows)), ""]
    lines += ["",
              "## Selective prediction (hierarchical route): area under the risk-coverage curve (lower is better)", "",
              "Confidences: `softmax` (top probability, the baseline), `margin`, `route_agreement` (lowest "
              "probability that flat, hierarchical and ensemble give the predicted label), `agreement_typical` "
              f"(route agreement, images referred by `{chosen}` last). Chosen on BRISC validation: "
              f"**{chosen_conf}**.", "", _md(aurc), "",
              "## Healthy brains from other scanners (every subject healthy: truth `no_tumor`)", "",
              "Slices through the brain by the rule of `hierarchy.data.volume`; T1 volumes resliced in all three "
              "planes. Per source and header plane:", "", _md(healthy), "",
              "Plane classifier against the plane from the DICOM/NIfTI geometry (slices within 20 degrees of an "
              "axis):", "", _md(planes), "",
              "Routing by the header plane (`header` route) against the learned routing (fraction called no "
              "tumour):", "", _md(header), "",
              "Series-level predictions (mean probability over brain slices, per volume and plane):", "",
              _md(series[[c for c in ("set", "series", "pred_label", "prob_no_tumor", "n_used", "plane_agreement",
                                      "referred_fraction") if c in series.columns]]), "",
              "Errors (healthy slices called a tumour and not referred) are in `gallery/healthy_called_tumour.png`, "
              "kept local.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())

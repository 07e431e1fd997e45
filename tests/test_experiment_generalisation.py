"""Seed ensembles, generalisation assessment, summary assembly and report sections on hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hierarchy.experiment.generalisation import (
    assess_generalisation,
    coverage_curves,
    ood_scores,
    perturbation_label,
)
from hierarchy.experiment.generalisation_report import generalisation_sections
from hierarchy.experiment.seeds import per_seed_results, seed_ensemble, seed_spread, train_seconds
from hierarchy.experiment.summary import (
    conformal_summary,
    external_summary,
    generalisation_summary,
    robustness_summary,
)
from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics import evaluate_predictions, simulate_predictions
from hierarchy.reports.writer import ReportFiles


def table(route: str, probs: list[list[float]], truth: list[str], ids=("a", "b", "c"), **extra) -> pd.DataFrame:
    """A prediction table of one route from class probabilities (in TUMOR_CLASSES order)."""
    proba = np.asarray(probs, dtype=float)
    frame = pd.DataFrame({"id": list(ids), "route": route,
                          "pred_label": np.asarray(TUMOR_CLASSES, dtype=object)[proba.argmax(axis=1)],
                          "true_label": truth, "expert": "flat", "referred": False, **extra})
    for k, name in enumerate(TUMOR_CLASSES):
        frame[f"prob_{name}"] = proba[:, k]
    return frame


TRUTH = ["glioma", "meningioma", "no_tumor"]


def test_seed_ensemble_averages_probabilities_per_image():
    seed0 = table("flat", [[0.6, 0.4, 0, 0], [0.2, 0.3, 0.5, 0], [0, 0, 0, 1]], TRUTH, ood_score=[1.0, 2.0, 3.0])
    # same images in another order: averaging must match rows by id, not by position
    seed1 = table("flat", [[0, 0.1, 0, 0.9], [0.2, 0.6, 0.2, 0], [0, 1, 0, 0]], ["no_tumor", "glioma", "meningioma"],
                  ids=("c", "a", "b"), ood_score=[5.0, 3.0, 4.0])
    out = seed_ensemble({0: seed0, 1: seed1}, ["flat"]).set_index("id")
    assert set(out["route"]) == {"flat_seeds"} and len(out) == 3
    assert out.loc["a", ["prob_glioma", "prob_meningioma"]].tolist() == pytest.approx([0.4, 0.5])
    assert out.loc["b", "prob_meningioma"] == pytest.approx(0.65)
    assert out["pred_label"].tolist() == ["meningioma", "meningioma", "no_tumor"]  # a flips, b flips
    assert out["true_label"].tolist() == TRUTH and (out["expert"] == "seeds").all()
    assert out["ood_score"].tolist() == pytest.approx([2.0, 3.0, 4.0])
    assert out["pred_plane"].isna().all()
    metrics = evaluate_predictions(out.reset_index(), n_bootstrap=20)
    assert metrics["routes"]["flat_seeds"]["headline"]["accuracy"]["value"] == pytest.approx(2 / 3)


def test_seed_ensemble_keeps_planes_and_refuses_bad_input():
    tables = {s: simulate_predictions(30, classes=TUMOR_CLASSES, planes=PLANES, seed=s) for s in (0, 1)}
    out = seed_ensemble(tables, ["hierarchical", "flat"])
    hier = out[out["route"] == "hierarchical_seeds"]
    assert hier["pred_plane"].notna().all() and out[out["route"] == "flat_seeds"]["pred_plane"].isna().all()
    with pytest.raises(ValueError, match="at least two seeds"):
        seed_ensemble({0: tables[0]}, ["flat"])
    with pytest.raises(ValueError, match="no predictions of route 'soft'"):
        seed_ensemble({0: tables[0], 1: tables[1][tables[1]["route"] != "soft"]}, ["soft"])
    with pytest.raises(ValueError, match="different images"):
        seed_ensemble({0: tables[0], 1: simulate_predictions(31, classes=TUMOR_CLASSES, planes=PLANES,
                                                             seed=1)}, ["flat"])


def test_seed_spread_per_seed_and_train_seconds():
    evaluations = {s: evaluate_predictions(simulate_predictions(60, classes=TUMOR_CLASSES, planes=PLANES,
                                                                seed=s), n_bootstrap=20) for s in (0, 1)}
    assert seed_spread({0: evaluations[0]}) is None
    spread = seed_spread(evaluations)
    accuracy = spread["routes"]["flat"]["accuracy"]
    assert spread["n_seeds"] == 2 and accuracy["std"] == pytest.approx(np.std(accuracy["values"], ddof=1))
    evaluations[0]["routes"]["flat_seeds"] = evaluations[0]["routes"]["flat"]
    per_seed = per_seed_results(evaluations)
    assert "flat_seeds" not in per_seed and set(per_seed["flat"]) == {"0", "1"}
    assert per_seed["flat"]["1"]["accuracy"] == evaluations[1]["routes"]["flat"]["headline"]["accuracy"]["value"]
    assert train_seconds({"train_seed0": 12.5, "predict_seed0": 1.0},
                         {"0": "train_seed0", "1": "train_seed1"}) == {"0": 12.5, "1": None}


def with_ood(frame: pd.DataFrame, shift: float, seed: int) -> pd.DataFrame:
    scores = pd.Series(np.random.default_rng(seed).normal(shift, 1.0, frame["id"].nunique()),
                       index=frame["id"].unique())
    return frame.assign(ood_score=frame["id"].map(scores))


def test_ood_scores_and_coverage_curves():
    pred = simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES, seed=0)
    assert ood_scores(pred) is None
    scored = with_ood(pred, 0.0, 0)
    scores = ood_scores(scored, "hierarchical")
    assert len(scores) == 40 and scores.index.is_unique
    assert ood_scores(scored.assign(ood_score=np.nan)) is None
    curves = coverage_curves(scored)
    assert set(curves) == set(pred["route"]) and curves["flat"]["coverage"][-1] == 1.0
    flat = scored[scored["route"] == "flat"]
    assert curves["flat"]["accuracy"][-1] == pytest.approx((flat["pred_label"] == flat["true_label"]).mean())


@pytest.fixture(scope="module")
def assessed():
    test = with_ood(simulate_predictions(80, classes=TUMOR_CLASSES, planes=PLANES, seed=0), 0.0, 0)
    external = with_ood(simulate_predictions(60, classes=TUMOR_CLASSES, planes=PLANES,
                                             seed=1, routes=("flat", "hierarchical", "soft")), 3.0, 1)
    validation = simulate_predictions(70, classes=TUMOR_CLASSES, planes=PLANES, seed=2)
    perturbed = {"jpeg_q75": simulate_predictions(80, classes=TUMOR_CLASSES, planes=PLANES, seed=3)}
    record = {"n_indexed": 65, "n_removed_as_training_duplicates": 5, "n_evaluated": 60}
    metrics = evaluate_predictions(test, n_bootstrap=30)
    return assess_generalisation(test, metrics, test_label="brisc test", validation=validation,
                                 external={"ext": (record, external)}, perturbed=perturbed, n_bootstrap=30,
                                 seed=0, alpha=0.1)


def test_assess_generalisation_orders_datasets_and_measures_shift(assessed):
    assert list(assessed.datasets) == ["brisc test", "ext", perturbation_label("jpeg_q75")]
    assert assessed.kinds == {"brisc test": "test", "ext": "external", "test + jpeg_q75": "perturbation"}
    ext = assessed.external["ext"]
    assert ext.ood_auroc["value"] > 0.9 and ext.ood_auroc["n_in"] == 80 and ext.ood_auroc["n_out"] == 60
    assert ext.comparison["route_a"] == "flat" and ext.comparison["route_b"] == "hierarchical"
    assert set(ext.ood_coverage) == {"flat", "hierarchical", "soft"}
    assert "ood_score" in ext.errors and (ext.errors["true_label"] != ext.errors["pred_label"]).all()
    assert set(assessed.conformal) == {"brisc test", "ext"}
    assert set(assessed.conformal["ext"]["routes"]) == {"flat", "hierarchical", "soft"}


def test_summary_blocks(assessed):
    external = external_summary(assessed)["ext"]
    assert external["n_evaluated"] == 60 and set(external["ood_auroc"]) == {"value", "ci", "n_in", "n_out"}
    assert external["mcnemar_p"] == assessed.external["ext"].comparison["mcnemar"]["p_value"]
    assert external["hierarchical"]["accuracy"] == \
        assessed.datasets["ext"]["routes"]["hierarchical"]["headline"]["accuracy"]["value"]
    general = generalisation_summary(assessed)
    assert general["test + jpeg_q75"]["kind"] == "perturbation"
    assert set(general["ext"]["routes"]["flat"]) == {"n", "accuracy", "accuracy_ci", "tumor_fnr", "tumor_fnr_ci"}
    conformal = conformal_summary(assessed)
    assert conformal["alpha"] == 0.1 and conformal["calibrated_on"] == "validation"
    assert 0 <= conformal["datasets"]["ext"]["flat"]["coverage"] <= 1
    clean = {"flat": 0.9, "hierarchical": 0.95}
    robust = robustness_summary(assessed, ["jpeg_q75"], clean)["jpeg_q75"]
    assert set(robust) == {"flat", "hierarchical"}
    assert robust["flat"]["drop"] == pytest.approx(0.9 - robust["flat"]["accuracy"])


def test_sections_collect_files_written_after_the_report(assessed, tmp_path):
    files = ReportFiles()
    sections = dict(generalisation_sections(assessed, files))
    secondary = sections["Secondary test sets (duplicate-free)"]
    assert "Nothing was trained, selected or tuned on the secondary test sets" in secondary
    assert "duplicate-free, not source-disjoint" in secondary
    assert "figures/generalisation.png" in sections["Generalisation at a glance"]
    assert "tables/ood_auroc.csv" in sections["Referral of atypical images (OOD score)"]
    assert "figures/ood_coverage.png" in sections["Referral of atypical images (OOD score)"]
    conformal = sections["Conformal prediction sets"]
    assert "tables/conformal.csv" in conformal and "tables/conformal_mondrian.csv" in conformal
    assert "Empty sets are allowed" in conformal
    assert "| sets | route | brisc test | ext |" in conformal  # coverage per secondary set beside the test split
    assert not (tmp_path / "figures").exists()
    files.write(tmp_path)
    for name in ("figures/generalisation.pdf", "figures/ood_coverage.png", "figures/confusion_external.png",
                 "tables/ood_auroc.md", "tables/external_ext_errors.csv", "tables/external_comparisons.tex"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert not (tmp_path / "gallery").exists()  # simulated rows have no image paths


def test_mondrian_sets_per_class_coverage_and_no_empty_sets():
    # confident routes at alpha 0.5: the threshold sits near p = 1, so a less confident image gets an empty set
    test = simulate_predictions(80, classes=TUMOR_CLASSES, planes=PLANES, skill=3.0, seed=0)
    validation = simulate_predictions(80, classes=TUMOR_CLASSES, planes=PLANES, skill=3.0, seed=2)
    metrics = evaluate_predictions(test, n_bootstrap=5)
    options = {"test_label": "t", "validation": validation, "external": {}, "perturbed": {}, "n_bootstrap": 5,
               "seed": 0, "alpha": 0.5}
    allowed = assess_generalisation(test, metrics, **options)
    forbidden = assess_generalisation(test, metrics, allow_empty=False, **options)
    assert allowed.conformal["t"]["routes"]["flat"]["empty"] > 0
    for result in (forbidden.conformal, forbidden.conformal_mondrian):
        assert all(r["empty"] == 0 for r in result["t"]["routes"].values())
    assert forbidden.conformal_mondrian["t"]["class_conditional"] is True
    flat = allowed.conformal_mondrian["t"]["routes"]["flat"]
    assert [c["class"] for c in flat["per_class"]] == list(TUMOR_CLASSES) and all(c["n"] == 20 for c in flat["per_class"])
    summary = conformal_summary(forbidden)
    assert summary["allow_empty"] is False and summary["mondrian"]["t"]["flat"]["empty"] == 0
    assert set(summary["mondrian"]["t"]["flat"]["coverage_per_class"]) == set(TUMOR_CLASSES)
    text = dict(generalisation_sections(forbidden, ReportFiles()))["Conformal prediction sets"]
    assert "Empty sets are not allowed" in text and "empty 0.0%" in text
    # calibration rows without some class: no Mondrian sets, said so
    partial = assess_generalisation(test, metrics, **{**options, "validation": validation[
        validation["true_label"] != "pituitary"]})
    assert partial.conformal_mondrian == {} and conformal_summary(partial)["mondrian"] is None


def test_sections_without_ood_scores_or_external_sets():
    plain = assess_generalisation(simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES, seed=0),
                                  evaluate_predictions(simulate_predictions(40, classes=TUMOR_CLASSES, planes=PLANES,
                                                                            seed=0), n_bootstrap=20),
                                  test_label="test", validation=None, external={}, perturbed={},
                                  n_bootstrap=20, seed=0)
    sections = dict(generalisation_sections(plain, ReportFiles()))
    assert sections["Secondary test sets (duplicate-free)"].startswith("No secondary test set")
    assert sections["Conformal prediction sets"].startswith("No validation predictions")
    assert conformal_summary(plain) is None and external_summary(plain) == {}


def test_ood_auroc_within_classes_and_against_perturbed_copies():
    test = with_ood(simulate_predictions(80, classes=TUMOR_CLASSES, planes=PLANES, seed=0), 0.0, 0)
    external = with_ood(simulate_predictions(80, classes=TUMOR_CLASSES, planes=PLANES, seed=1), 0.0, 1)
    external["ood_score"] += np.where(external["true_label"] == "no_tumor", 4.0, 0.0)  # only normals shifted
    perturbed = {"gamma_0.8": with_ood(simulate_predictions(80, classes=TUMOR_CLASSES, planes=PLANES, seed=3), 5.0, 3)}
    record = {"n_indexed": 80, "n_removed_as_training_duplicates": 0, "n_evaluated": 80}
    result = assess_generalisation(test, evaluate_predictions(test, n_bootstrap=20), test_label="brisc test",
                                   validation=None, external={"ext": (record, external)}, perturbed=perturbed,
                                   n_bootstrap=20, seed=0)
    ext = result.external["ext"]
    assert set(ext.ood_auroc_by_class) == set(TUMOR_CLASSES)
    assert ext.ood_auroc_by_class["no_tumor"]["value"] > 0.95 and ext.ood_auroc_by_class["no_tumor"]["n_out"] == 20
    assert all(abs(ext.ood_auroc_by_class[c]["value"] - 0.5) < 0.3 for c in TUMOR_CLASSES if c != "no_tumor")
    assert ext.ood_auroc["value"] < ext.ood_auroc_by_class["no_tumor"]["value"] - 0.2  # diluted by the other classes
    assert result.perturbation_ood[perturbation_label("gamma_0.8")]["value"] > 0.95
    assert set(external_summary(result)["ext"]["ood_auroc_by_class"]["no_tumor"]) == {"value", "ci", "n_in", "n_out"}
    files = ReportFiles()
    section = dict(generalisation_sections(result, files))["Referral of atypical images (OOD score)"]
    assert "tables/ood_auroc_detail.csv" in section and "ext, no_tumor only" in section
    few = with_ood(simulate_predictions(30, classes=TUMOR_CLASSES, planes=PLANES,
                                        seed=4), 0.0, 4)  # 7-8 images a class: too few for a per-class AUROC
    small = assess_generalisation(test, evaluate_predictions(test, n_bootstrap=20), test_label="brisc test",
                                  validation=None, external={"ext": (record, few)}, perturbed={},
                                  n_bootstrap=20, seed=0)
    assert small.external["ext"].ood_auroc_by_class == {} and small.perturbation_ood == {}

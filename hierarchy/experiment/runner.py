"""The flat-vs-hierarchical comparison as resumable stages, from a dataset root to a full report.

Under ``torchrun --nproc_per_node N`` rank 0 runs the experiment and alone writes into ``out_dir``; each
training call (every seed's Router, the random-initialisation flat model) is shared with the other ranks as a
job (:meth:`~hierarchy.training.distributed.DistContext.share_job`), which they run data-parallel with it and
then wait for the next; they exit once every model is trained.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hierarchy.csv_io import read_csv, write_csv
from hierarchy.data import (
    audit,
    cv_folds,
    duplicate_groups,
    holdout_source,
    index_dataset,
    make_synthetic_dataset,
    source_name,
    train_val_split,
    with_phash,
)
from hierarchy.data.splits import duplicating_ids
from hierarchy.experiment.checklist import TITLE as CHECKLIST_TITLE
from hierarchy.experiment.checklist import reporting_checklist
from hierarchy.experiment.clinical import assess_clinical, clinical_sections, clinical_summary
from hierarchy.experiment.endpoint_report import lead_sections
from hierarchy.experiment.endpoints import comparison_family, estimate, evaluate_datasets
from hierarchy.experiment.explanations import (
    SECTION_TITLE,
    explain_test_images,
    explanation_section,
)
from hierarchy.experiment.external import external_name, load_external
from hierarchy.experiment.generalisation import assess_generalisation, split_by_source
from hierarchy.experiment.generalisation_report import generalisation_sections
from hierarchy.experiment.label_quality import TITLE as DATA_TITLE
from hierarchy.experiment.label_quality import (
    assess_label_quality,
    label_quality_section,
    label_quality_summary,
)
from hierarchy.experiment.model_runs import ModelRun, fold_runs, seed_runs
from hierarchy.experiment.profiles import PRIMARY_SUBSETS, ExperimentConfig
from hierarchy.experiment.refit_control import CONTROL, refit_flat_head
from hierarchy.experiment.resume import (
    CONFIG_FILE,
    OUTPUTS_FILE,
    check_resume,
    claim_out_dir,
    resume_identity,
)
from hierarchy.experiment.sections import report_sections
from hierarchy.experiment.seeds import seed_ensemble, seed_route
from hierarchy.experiment.shortcut import metadata_shortcut
from hierarchy.experiment.shortcut_tests import (
    attribution_scores,
    build_cases,
    evaluate_cases,
    save_examples,
    shortcut_section,
)
from hierarchy.experiment.stages import StageLog
from hierarchy.experiment.summary import summarise
from hierarchy.experiment.weights_plan import plan_weights
from hierarchy.fileio import read_json, write_json
from hierarchy.metrics import (
    apply_temperature,
    brier_score,
    compare_routes,
    evaluate_predictions,
    expected_calibration_error,
    fit_temperature,
    labels_and_probabilities,
)
from hierarchy.predictions import ROUTES, prob_column
from hierarchy.provenance import run_record, source_commit
from hierarchy.reports import COMPARISONS, build_report
from hierarchy.reports.writer import ReportFiles
from hierarchy.routing import ImageClassifier, Router, RouterConfig, Task, route_throughput
from hierarchy.training import resolve_runtime
from hierarchy.training.distributed import DistContext, init_distributed

logger = logging.getLogger(__name__)

# one dataset root, several (indexed together, each row's ``source`` naming its root), or None for synthetic data
DataRoots = str | Path | Sequence[str | Path] | None


SHORTCUT_TITLE = "Shortcut tests: does the answer follow the tumour?"
SHORTCUT_ROUTES = ("flat", "hierarchical", "soft", "ensemble")
SHORTCUT_EXAMPLES = "shortcut_examples.png"
CALIBRATION_SPLIT_SEED = 1  # the conformal calibration split's shuffle, apart from the validation split's (0)
# routes of the primary endpoint, the family of tests and the per-model results, when present
ENDPOINT_ROUTES = ("flat", CONTROL, "hierarchical", "soft", "ensemble")


def _read_csv(path: Path) -> pd.DataFrame:
    return read_csv(path, "prediction table", keep_default_na=False, na_values=[""])


def _save_predictions(table: pd.DataFrame, path: Path) -> None:
    """Predictions are saved without file paths (ids are dataset-relative), so no machine's paths are kept."""
    write_csv(table.drop(columns=["path"], errors="ignore"), path)


def _load_predictions(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Saved predictions with each image's path restored from the dataset index."""
    table = _read_csv(path)
    table["path"] = table["id"].map(frame.set_index("id")["path"])
    return table


def _fit_router(settings: RouterConfig, train: pd.DataFrame, val: pd.DataFrame, out_dir: Path) -> Router:
    """One seed's Router trained (resuming in ``out_dir``): a job every rank runs."""
    return Router.from_config(settings).fit(train, val, out_dir=out_dir, resume=True)


def _fit_classifier(model: ImageClassifier, train: pd.DataFrame, val: pd.DataFrame, out_dir: Path) -> ImageClassifier:
    """``model`` trained (resuming in ``out_dir``): a job every rank runs."""
    return model.fit(train, val, out_dir=out_dir, resume=True)


def _with_probabilities(rows: pd.DataFrame, proba: np.ndarray, classes: list[str], route: str) -> pd.DataFrame:
    """``rows`` (one route's prediction table) with another model's probabilities, arg-max and route name."""
    rows = rows.copy()
    for i, label in enumerate(classes):
        rows[prob_column(label)] = proba[:, i]
    rows["pred_label"] = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    return rows.assign(route=route)


def _routes_for(frame: pd.DataFrame) -> tuple[str, ...]:
    """Every route, less the oracle when some image has no true plane (it routes by the true plane)."""
    return tuple(r for r in ROUTES if r != "oracle" or frame["plane"].notna().all())


class Experiment:
    """One run of the comparison in ``out_dir``; every step is a stage that a re-run skips when done.

    ``dist_ctx``: under ``torchrun``, rank 0's context; the training calls are shared with the other ranks
    (see :func:`run_experiment`). A single process by default.
    """

    def __init__(self, config: ExperimentConfig, data_root: DataRoots, out_dir: str | Path,
                 command: str | None = None, dist_ctx: DistContext | None = None, *,
                 external: Sequence[str | Path] = (), restart: bool = False) -> None:
        self.config, self.command = config, command
        self.dist = dist_ctx or DistContext()
        if not self.dist.is_main:
            raise ValueError(f"rank {self.dist.rank} does not run the experiment; it follows rank 0's jobs")
        self.out = Path(out_dir)
        self.work = self.out / "work"
        # stage outputs the report's manifest lists
        self.outputs: list[Path] = [self.out / CONFIG_FILE, self.out / OUTPUTS_FILE]
        self.predictions_dir = self.out / "predictions"
        roots = [] if data_root is None else [data_root] if isinstance(data_root, (str, Path)) else list(data_root)
        # every input is indexed (each file hashed) before anything is written: a changed input, a folder of
        # someone else's files or an unreadable root stops the run here, not after training
        self.indexed = index_dataset(roots[0] if len(roots) == 1 else roots) if roots else None
        self.external_roots = list(external)
        self.external_frames = {external_name(root): index_dataset(root) for root in self.external_roots}
        self.out.mkdir(parents=True, exist_ok=True)
        claim_out_dir(self.out)
        check_resume(self.out, resume_identity(config.to_dict(), self.indexed, self.external_frames),
                     restart=restart)
        for folder in (self.work, self.predictions_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.stages = StageLog(self.work / "stages.json", commit=source_commit())
        self._controls: dict[str, ImageClassifier] = {}  # refit controls by run key, fitted when first needed
        self.data_roots = [Path(r) for r in roots] or [self.stages.run(
            "synthetic_data", lambda: make_synthetic_dataset(self.work / "synthetic", seed=0, **config.synthetic),
            lambda: self.work / "synthetic")]
        self.dataset_name = "+".join(source_name(r) for r in self.data_roots)

    @property
    def test_label(self) -> str:
        """The test set's name in tables and figures."""
        held_out = self.config.holdout_source
        return f"{held_out} (held out)" if held_out else f"{self.dataset_name} test"

    # -- data ----------------------------------------------------------------------------------
    def load_data(self) -> None:
        # Perceptual hashes are computed once here and reused by the audit, the split and the leakage check.
        if self.indexed is None:  # synthetic data, made by the first stage
            self.indexed = index_dataset(self.data_roots[0])
        self.frame = with_phash(self.indexed)
        split = self.frame["split"]
        if self.config.holdout_source:
            train_all, test = holdout_source(self.frame, self.config.holdout_source)
        else:
            train_all, test = self.frame[split == "train"], self.frame[split == "test"]
        self.train_all, self.test = train_all.reset_index(drop=True), test.reset_index(drop=True)
        if self.train_all.empty or self.test.empty:
            raise ValueError(f"{self.dataset_name}: need a train and a test split; found "
                             f"{split.value_counts().to_dict()}")
        self.audit = self.stages.run("audit", self._audit, lambda: read_json(self.out / "audit" / "audit.json"))
        self.stages.run("split", self._split, lambda: None)
        subsets = read_csv(self.work / "split.csv", "split list", dtype=str).set_index("id")["subset"]
        assigned = self.train_all["id"].map(subsets)
        self.train = self.train_all[assigned == "train"].reset_index(drop=True)
        self.val = self.train_all[assigned == "val"].reset_index(drop=True)
        self.calibration_rows = self.train_all[assigned == "calibration"].reset_index(drop=True)
        if self.config.cv_folds:
            folds = read_csv(self.work / "folds.csv", "fold list", dtype={"id": str})
            pool = self.train_all[assigned != "calibration"].reset_index(drop=True)
            self.runs = fold_runs(pool, folds, self.config.seeds[0])
        else:
            self.runs = seed_runs(self.config.seeds, self.train, self.val)
        # duplicate group of every image (exact or near): intervals on the test split resample whole groups
        self.groups = dict(zip(self.frame["id"], duplicate_groups(self.frame, near=True), strict=True))
        self.leaked_test_ids = self.stages.run("leakage", self._leakage,
                                               lambda: read_json(self.work / "test_ids_duplicating_train.json"))
        self.shortcut = self.stages.run("shortcut", self._shortcut, lambda: read_json(self.work / "shortcut.json"))

    def _audit(self) -> dict[str, Any]:
        frame = self.frame.copy()
        frame.attrs["root"] = self.dataset_name  # the report names the dataset, not this machine's path
        report = audit(frame, progress=False)
        report.write(self.out / "audit", overwrite=True)
        return report.to_dict()

    def _split(self) -> None:
        """The calibration split (conformal sets only), then train/validation of the rest; with ``cv_folds`` also
        the folds of the rest (the training pool), every duplicate group kept on one side of each cut."""
        config = self.config
        pool, calibration = self.train_all, self.train_all.iloc[:0]
        if config.calibration_fraction:
            try:
                pool, calibration = train_val_split(self.train_all, val_fraction=config.calibration_fraction,
                                                    seed=CALIBRATION_SPLIT_SEED)
            except ValueError as err:
                raise ValueError(f"{self.dataset_name}: cannot hold out calibration_fraction="
                                 f"{config.calibration_fraction} of the training pool ({err}); set a larger "
                                 "fraction, or 0 to calibrate the conformal sets on the validation rows") from err
        train, val = train_val_split(pool, val_fraction=config.router.val_fraction, seed=0)
        parts = {"train": train, "val": val, "calibration": calibration}
        write_csv(pd.DataFrame({"id": [i for rows in parts.values() for i in rows["id"]],
                                "subset": [name for name, rows in parts.items() for _ in range(len(rows))]}),
                  self.work / "split.csv")
        if config.cv_folds:
            write_csv(cv_folds(pool, config.cv_folds, config.cv_repeats, seed=0), self.work / "folds.csv")

    def _leakage(self) -> list[str]:
        """Test images that duplicate (exactly or by perceptual hash) some training image."""
        leaked = duplicating_ids(self.frame, set(self.train_all["id"]), set(self.test["id"]))
        write_json(self.work / "test_ids_duplicating_train.json", leaked)
        return leaked

    def _shortcut(self) -> dict[str, Any]:
        result = metadata_shortcut(self.train_all, self.test)
        write_json(self.work / "shortcut.json", result)
        return result

    # -- models --------------------------------------------------------------------------------
    def fit_router(self, run: ModelRun) -> Router:
        run_dir = self.work / run.folder

        def fit() -> Router:
            settings = self.config.router_config(run.seed, self.weights["flat_backbone"])
            router = self.dist.share_job(partial(_fit_router, settings, run.train, run.val, run_dir))
            router.save(run_dir / "router", overwrite=True)
            return router
        return self.stages.run(f"train_{run.key}", fit, lambda: Router.load(run_dir / "router"))

    def refit_control(self, run: ModelRun, router: Router) -> ImageClassifier | None:
        """The ``flat_refit`` control of ``run``'s Router (``joint`` and ``shared`` modes; None otherwise): a
        linear head over every training row on the flat trunk, fitted like the experts. Fitted once per run
        (from the Router's feature cache) and only when a prediction stage needs it."""
        if router.mode not in ("joint", "shared"):
            return None
        if run.key not in self._controls:
            self._controls[run.key] = refit_flat_head(router, run.train, run.val,
                                                      work=self.work / run.folder / "training")
        return self._controls[run.key]

    def predict_rows(self, run: ModelRun, router: Router, frame: pd.DataFrame) -> pd.DataFrame:
        """Every route of ``router`` on ``frame``, plus the ``flat_refit`` control where there is one."""
        table = router.predict_routes(frame, _routes_for(frame))
        control = self.refit_control(run, router)
        if control is None:
            return table
        rows = _with_probabilities(table[table["route"] == "flat"], control.predict_proba(frame),
                                   list(router.classes_), CONTROL)
        return pd.concat([table, rows], ignore_index=True)

    def random_init_flat(self, run: ModelRun, router: Router) -> pd.DataFrame:
        """The intended flat backbone trained from random initialisation, as an extra, clearly named route."""
        backbone = self.weights["random_init_flat_backbone"]
        settings = self.config.router_config(run.seed, self.weights["flat_backbone"])
        model = ImageClassifier(backbone, Task("label", router.classes_), weights=None, mode="finetune",
                                preprocess=settings.preprocess, train_config=settings.train_config("flat"))
        model = self.dist.share_job(partial(_fit_classifier, model, run.train, run.val,
                                            self.work / run.folder / "training" / "flat_random_init"))
        return _with_probabilities(router.predict(self.test, "flat", progress=False), model.predict_proba(self.test),
                                   list(router.classes_), f"flat_{backbone}_random_init")

    def predict_test(self, run: ModelRun, router: Router) -> pd.DataFrame:
        path = self.predictions_dir / f"test_{run.key}.csv"

        def predict() -> None:
            table = self.predict_rows(run, router, self.test)
            if self.weights["random_init_flat_backbone"]:
                table = pd.concat([table, self.random_init_flat(run, router)], ignore_index=True)
            _save_predictions(table, path)
        self.stages.run(f"predict_{run.key}", predict, lambda: None)
        self.outputs.append(path)
        return _load_predictions(path, self.test)

    # -- side evaluations on the first seed's models -------------------------------------------
    def robustness(self, router: Router) -> dict[str, pd.DataFrame]:
        """Test-split predictions after each perturbation, saved (ids, no paths) under ``predictions/``."""
        tables = {}
        for perturbation in self.config.perturbations:
            path = self.predictions_dir / f"test_{perturbation}.csv"

            def predict(perturbation: str = perturbation, path: Path = path) -> None:
                table = router.predict_routes(self.test, _routes_for(self.test), perturbation=perturbation)
                _save_predictions(table, path)
            self.stages.run(f"perturbed_{perturbation}", predict, lambda: None)
            self.outputs.append(path)
            tables[perturbation] = _load_predictions(path, self.test)
        return tables

    def external(self, roots: list[str] | tuple[str, ...], run: ModelRun,
                 router: Router) -> dict[str, tuple[dict, pd.DataFrame]]:
        """Per external set: its cleaning record and ``run``'s predictions, saved (ids, no paths) under
        ``predictions/``."""
        results = {}
        for root in roots:
            name = external_name(root)
            frame, record = load_external(root, self.train_all, self.external_frames.get(name))
            path = self.predictions_dir / f"external_{name}_{run.key}.csv"

            def predict(frame: pd.DataFrame = frame, path: Path = path) -> None:
                _save_predictions(self.predict_rows(run, router, frame), path)
            self.stages.run(f"external_{name}_{run.key}", predict, lambda: None)
            self.outputs.append(path)
            results[name] = (record, _load_predictions(path, frame))
        return results

    def predict_held_out(self, subset: str, frame: pd.DataFrame, run: ModelRun, router: Router) -> pd.DataFrame:
        """``run``'s predictions of its validation rows (``subset="val"``: temperatures) or of the calibration
        split (``"calibration"``: conformal sets), predicted once and saved like test predictions."""
        path = self.predictions_dir / f"{subset}_{run.key}.csv"
        self.stages.run(f"predict_{subset}_{run.key}",
                        lambda: _save_predictions(self.predict_rows(run, router, frame), path), lambda: None)
        self.outputs.append(path)
        return _load_predictions(path, frame)

    def throughput(self, router: Router) -> dict[str, float]:
        sample = self.test.sample(n=min(self.config.throughput_images, len(self.test)), random_state=0)
        path = self.work / "throughput.json"

        def measure() -> dict[str, float]:
            speeds = route_throughput(router, sample, ROUTES[:4], warmup=0)
            write_json(path, speeds)
            return speeds
        return self.stages.run("throughput", measure, lambda: read_json(path))

    @property
    def explanation_arrays(self) -> Path:
        """Inputs, masks and maps of the explained images, for the attribution figure."""
        return self.work / "explanations.npz"

    def explanations(self, router: Router, predictions: pd.DataFrame) -> dict[str, Any]:
        """Grad-CAM of the deciding model for tumour test images, scored against radiologist masks."""
        path = self.work / "explanations.json"

        def explain() -> dict[str, Any]:
            result = explain_test_images(router, self.test, predictions, self.out,
                                         n_images=self.config.explain_images, arrays_path=self.explanation_arrays)
            write_json(path, result)
            return result
        return self.stages.run("explanations", explain, lambda: read_json(path))

    def shortcut_tests(self, router: Router) -> dict[str, Any]:
        """Shortcut tests and attribution against masks on the test split (example images go to ``gallery/``)."""
        path = self.work / "shortcut_tests.json"

        def run() -> dict[str, Any]:
            n = self.config.shortcut_images
            cases = build_cases(self.test, n=n, seed=self.config.seeds[0])
            save_examples(cases, self.out / "gallery" / SHORTCUT_EXAMPLES)
            result = {"tests": {"n_per_test": n, "seed": self.config.seeds[0],
                                **evaluate_cases(router, cases, self.test, routes=SHORTCUT_ROUTES)},
                      "attribution": attribution_scores(router, self.test, n=n, seed=self.config.seeds[0])}
            write_json(path, result)
            return result
        return self.stages.run("shortcut_tests", run, lambda: read_json(path))

    def seed_evaluations(self, predictions: dict[str, pd.DataFrame], first_metrics: dict) -> dict[str, dict]:
        """Every model's evaluation by name (the first one's is given); only the first one when there is one."""
        return {run.name: first_metrics if run is self.runs[0] else
                evaluate_predictions(predictions[run.name], n_bootstrap=self.config.n_bootstrap, seed=run.seed)
                for run in self.runs}

    @staticmethod
    def calibration(validation: pd.DataFrame, predictions: pd.DataFrame,
                    classes: list[str]) -> dict[str, dict[str, float]]:
        """Per route predicted on both: a temperature fitted on the validation rows' predictions (minimum NLL of
        their log-probabilities), and test ECE and Brier before and after it."""
        result = {}
        for route in dict.fromkeys(predictions["route"]):
            val_rows = validation[validation["route"] == route]
            if val_rows.empty:
                continue
            y_val, proba_val = labels_and_probabilities(val_rows, classes)
            temperature = fit_temperature(np.log(np.maximum(proba_val, 1e-12)), y_val)
            y_true, proba = labels_and_probabilities(predictions[predictions["route"] == route], classes)
            scaled = apply_temperature(proba, temperature, are_probabilities=True)
            result[route] = {"temperature": temperature,
                             "ece": expected_calibration_error(y_true, proba),
                             "ece_calibrated": expected_calibration_error(y_true, scaled),
                             "brier": brier_score(y_true, proba), "brier_calibrated": brier_score(y_true, scaled)}
        return result

    def with_seed_ensembles(self, predictions: dict[str, pd.DataFrame]) -> pd.DataFrame:
        """The first model's test predictions plus, with several models, the ensemble routes ``<route>_seeds``
        (probabilities averaged over seeds or fold models; also saved)."""
        first = predictions[self.runs[0].name]
        routes = [r for r in self.config.seed_ensemble_routes if r in set(first["route"])]
        if len(predictions) < 2 or not routes:
            return first
        ensembles = seed_ensemble(predictions, routes)
        _save_predictions(ensembles, self.predictions_dir / "test_seed_ensemble.csv")
        self.outputs.append(self.predictions_dir / "test_seed_ensemble.csv")
        return pd.concat([first, ensembles], ignore_index=True)

    def endpoints(self, predictions: dict[str, pd.DataFrame],
                  external: dict[str, dict[str, tuple[dict, pd.DataFrame]]]) -> dict[str, Any]:
        """The primary endpoint, the adjusted family of flat-vs-hierarchical tests and, with several models, every
        model's results with the combined intervals (``summary.json`` keys ``primary_endpoint``,
        ``comparison_family`` and ``cross_model``)."""
        config = self.config
        leaked = set(self.leaked_test_ids)
        subset = {name: table[~table["id"].isin(leaked)] if config.primary_subset == "unseen" else table
                  for name, table in predictions.items()}
        primary_label = f"{self.test_label}, {config.primary_subset}"
        datasets = {primary_label: (subset, self.groups)}
        if config.primary_subset != "all":
            datasets[f"{self.test_label}, all"] = (predictions, self.groups)
        for name in next(iter(external.values()), {}):
            datasets[name] = ({model: tables[name][1] for model, tables in external.items()}, None)
        evaluations = evaluate_datasets(datasets, ENDPOINT_ROUTES, config.primary_routes,
                                        n_bootstrap=config.n_bootstrap, seed=config.seeds[0])
        declared = estimate(evaluations[primary_label])
        first = next(iter(evaluations[primary_label]["per_model"].values()))
        primary = {"metric": "accuracy", "subset": config.primary_subset,
                   "subset_description": PRIMARY_SUBSETS[config.primary_subset], "dataset": primary_label,
                   "reference": config.primary_routes[0], "compared": config.primary_routes[1],
                   "multiplicity": config.multiplicity, **declared,
                   "first_model": None if declared["models"] == 1 else first}
        cross = None
        if len(self.runs) > 1:
            cross = {"kind": "folds" if config.cv_folds else "seeds", "models": [r.name for r in self.runs],
                     "cv": {"folds": config.cv_folds, "repeats": config.cv_repeats} if config.cv_folds else None,
                     "datasets": {label: {"per_model": e["per_model"], "combined": e["combined"]}
                                  for label, e in evaluations.items()}}
        return {"primary_endpoint": primary, "cross_model": cross,
                "comparison_family": comparison_family(evaluations, method=config.multiplicity)}

    # -- the whole run -------------------------------------------------------------------------
    def run(self, external: Sequence[str | Path] | None = None) -> dict[str, Any]:
        """Every stage not finished yet, then the report; ``external``: the external sets (default: those
        given to the constructor, whose content the resume check covers)."""
        config = self.config
        external = self.external_roots if external is None else list(external)
        self.load_data()
        self.weights = plan_weights(config)
        predictions, external_by_model = {}, {}
        for run in self.runs:
            router = self.fit_router(run)
            predictions[run.name] = self.predict_test(run, router)
            external_by_model[run.name] = self.external(external, run, router)
            if run is self.runs[0]:
                first_router = router
        self.dist.end_jobs()  # every model is trained: the other ranks may exit
        first_run, first = self.runs[0], config.seeds[0]
        validation = self.predict_held_out("val", first_run.val, first_run, first_router)
        calibration_set = (self.predict_held_out("calibration", self.calibration_rows, first_run, first_router)
                           if len(self.calibration_rows) else validation)
        perturbed = self.robustness(first_router)
        external_predictions = external_by_model[first_run.name]
        throughput = self.throughput(first_router)
        explanations = self.explanations(first_router, predictions[first_run.name])
        shortcut_tests = self.shortcut_tests(first_router)
        calibration = self.calibration(validation, predictions[first_run.name], list(first_router.classes_))
        pred = self.with_seed_ensembles(predictions)

        record = run_record(config.to_dict(), runtime=resolve_runtime().describe(), seed=first,
                            frames={"train": first_run.train, "val": first_run.val,
                                    "calibration": self.calibration_rows, "test": self.test})
        record.update({"command": self.command, "dataset_root_name": self.dataset_name, "weights": self.weights,
                       "stage_seconds": self.stages.seconds(), "stage_commits": self.stages.commits(),
                       "profile": config.profile, "seeds": list(config.seeds),
                       "models": [r.name for r in self.runs]})

        metrics = evaluate_predictions(pred, n_bootstrap=config.n_bootstrap, seed=first)
        pairs = [*COMPARISONS, *((seed_route(a), seed_route(b)) for a, b in COMPARISONS)]
        comparisons = [compare_routes(pred, a, b, n_bootstrap=config.n_bootstrap, seed=first)
                       for a, b in pairs if a in metrics["routes"] and b in metrics["routes"]]
        generalisation = assess_generalisation(
            pred, metrics, test_label=self.test_label, validation=calibration_set,
            external=external_predictions, perturbed=perturbed, n_bootstrap=config.n_bootstrap, seed=first,
            alpha=config.conformal_alpha, sources=split_by_source(pred, self.test),
            calibrated_on="calibration split" if len(self.calibration_rows) else "validation",
            allow_empty=config.conformal_allow_empty)
        clinical = assess_clinical(generalisation, pred, n_bootstrap=config.n_bootstrap, seed=first)
        quality = assess_label_quality(self.audit, pred, generalisation, dataset=self.dataset_name,
                                       external_roots=external)
        summary = summarise(config=config, dataset=self.dataset_name, metrics=metrics, comparisons=comparisons,
                            predictions=pred, seed_evaluations=self.seed_evaluations(predictions, metrics),
                            generalisation=generalisation, throughput=throughput,
                            shortcut=self.shortcut, audit=self.audit, leaked_test_ids=self.leaked_test_ids,
                            weights=self.weights, calibration=calibration, stage_seconds=self.stages.seconds(),
                            train_keys={r.name: f"train_{r.key}" for r in self.runs})
        summary = {**self.endpoints(predictions, external_by_model), **summary}  # the declared endpoint first
        summary["calibration_split"] = {"fraction": config.calibration_fraction, "n": len(self.calibration_rows),
                                        "conformal_calibrated_on": generalisation.calibrated_on}
        summary["shortcut_tests"] = shortcut_tests["tests"]["tests"]
        summary["attribution_vs_mask"] = shortcut_tests["attribution"]
        summary.update(clinical_summary(clinical), **label_quality_summary(quality))
        training_logs = {name: log for name in ("flat", "plane", *first_router.planes_)
                         if (log := self.work / first_run.folder / "training" / name / "log.csv").exists()}
        files = ReportFiles()
        files.json("run_record.json", record)
        leading = lead_sections(summary)
        sections = [*((title, body) for title, body in report_sections(
                        summary, command=self.command, generalisation=generalisation_sections(generalisation, files))
                      if not (title == "Seeds" and config.cv_folds)),
                    *clinical_sections(clinical, files), (DATA_TITLE, label_quality_section(quality, files)),
                    (SHORTCUT_TITLE, shortcut_section(shortcut_tests["tests"], shortcut_tests["attribution"],
                                                     examples=f"gallery/{SHORTCUT_EXAMPLES}")),
                    (SECTION_TITLE, explanation_section(explanations, files, self.explanation_arrays))]
        checklist, summary["checklist"] = reporting_checklist([title for title, _ in [*leading, *sections]], files)
        sections.append((CHECKLIST_TITLE, checklist))
        files.json("summary.json", summary)
        overlays = {r["id"]: self.out / r["overlay"] for r in explanations["rows"] if r["route"] == "hierarchical"}
        audit_files = sorted(p for p in (self.out / "audit").rglob("*") if p.is_file())
        examples = self.out / "gallery" / SHORTCUT_EXAMPLES
        build_report(pred, self.out, run_record=record, training_logs=training_logs, extra_sections=sections,
                     lead_sections=leading, overlays=overlays, metrics=metrics, compared=comparisons,
                     n_bootstrap=config.n_bootstrap, seed=first, files=files, overwrite=True,
                     adopt=[p.relative_to(self.out).as_posix() for p in [*self.outputs, *audit_files] if p.is_file()],
                     adopt_local=sorted({r["overlay"] for r in explanations["rows"]}
                                        | ({f"gallery/{SHORTCUT_EXAMPLES}"} if examples.is_file() else set())))
        return summary


def run_experiment(config: ExperimentConfig, *, data_root: DataRoots, out_dir: str | Path,
                   external: list[str] | tuple[str, ...] = (), command: str | None = None,
                   restart: bool = False) -> dict[str, Any] | None:
    """Train flat, plane and expert models per seed, evaluate every route on the test split, write the report.

    ``data_root``: one dataset root, several (indexed together; metrics are also given per ``source``;
    ``config.holdout_source`` trains on the other sources and tests on that one), or None for synthetic
    data. Stages already finished in ``out_dir`` (see ``work/stages.json``) are reused when the settings, the
    code's version and every input's content are those of the earlier run (``hierarchy.experiment.resume``);
    otherwise the run is refused, naming what changed, or, with ``restart``, starts again. Returns
    ``summary.json``'s dict.

    Under ``torchrun --nproc_per_node N`` every rank calls this: rank 0 runs the experiment and writes every
    file, the other ranks join each training call (data-parallel, ``batch_size`` being the global batch) and
    return None once the models are trained. A single process creates no process group.
    """
    dist_ctx = init_distributed(resolve_runtime().device)
    try:
        if not dist_ctx.is_main:
            dist_ctx.follow_jobs()
            return None
        return Experiment(config, data_root, out_dir, command, dist_ctx, external=external, restart=restart).run()
    finally:
        dist_ctx.close()

"""A paper-ready report from a saved prediction table alone: no model, no images.

The prediction table (``hierarchy.predictions``: one row per image and route) is the only contract between
models and evaluation, so predictions saved by ``hierarchy evaluate`` or the experiment, or written by any
other tool in that layout, give the same report. Here the table is simulated (its numbers mean nothing).

    python examples/report_from_predictions.py OUT_DIR
"""

import argparse
from pathlib import Path

import pandas as pd

from hierarchy.labels import PLANES, TUMOR_CLASSES
from hierarchy.metrics import simulate_predictions
from hierarchy.reports import build_report

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out", type=Path, help="folder for the prediction table and the report")
args = parser.parse_args()

# 1. Some tool saved predictions (any routes; here flat, hierarchical and ensemble).
args.out.mkdir(parents=True, exist_ok=True)
saved = args.out / "predictions.csv"
simulate_predictions(120, classes=TUMOR_CLASSES, planes=PLANES,
                     routes=("flat", "hierarchical", "ensemble"), seed=0).to_csv(saved, index=False)

# 2. Read them back and write the report: per-class ROC/AUC, CIs, McNemar, calibration, false negatives.
report = build_report(pd.read_csv(saved), args.out / "report", n_bootstrap=200, seed=0)
print("report:", report)
print("figures:", sorted(p.name for p in (args.out / "report" / "figures").glob("*.png")))
print("tables:", sorted(p.name for p in (args.out / "report" / "tables").glob("*.csv")))

"""Ablation of training that has to look at the tumour: mask supervision, counterfactuals, style decorrelation.

    python experiments/ablation_disease.py --data ../shared/data/brisc2025 \
        --external ../shared/data/figshare_br35h --out reports/benchmarks/disease_ablation \
        --healthy ../shared/data/scanner_samples/nifti/IXI012-HH-1211_T1.nii.gz \
        --healthy ../shared/data/scanner_samples/nifti/IXI015-HH-1258_T1.nii.gz \
        --healthy ../shared/data/scanner_samples/dicom/t1_mprage

Every arm is the ``cpu`` profile's Router (EfficientNet-Lite0 trained jointly on the tumour label and the plane)
with one group of settings changed (``hierarchy.experiment.disease_study.ARMS``); all train on the same BRISC
training rows with seed 0. Each arm is evaluated on BRISC validation and test rows (clean and re-encoded), the
test images without a training duplicate, the shortcut tests on validation and test images, Grad-CAM against
the test masks, any external sets, and healthy scanner volumes resliced in every plane (share called no tumour). One arm is *chosen* by the rule declared in
``hierarchy.experiment.disease_study`` (validation accuracy and validation shortcut tests only); nothing is
chosen on test or external data. Re-running with the same ``--out`` skips finished arms (adding evaluations
they lack) and resumes an interrupted one. Each arm fine-tunes a network: about 40 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hierarchy.experiment.ablation import run_study, study_frames
from hierarchy.experiment.disease_study import (
    ARMS,
    DISEASE_SELECTION,
    disease_markdown,
    healthy_slices,
    study_extras,
)
from hierarchy.experiment.profiles import PROFILES
from hierarchy.experiment.recipe_arms import profile_router, study_setup
from hierarchy.logs import configure_logging
from hierarchy.provenance import command_line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="BRISC 2025 root (train split used; test only evaluated)")
    parser.add_argument("--external", action="append", default=[], metavar="ROOT", help="external test set")
    parser.add_argument("--healthy", action="append", default=[], metavar="PATH",
                        help="healthy scanner volume (NIfTI file or DICOM series folder), resliced in every plane")
    parser.add_argument("--out", required=True, help="folder for ablation.md/json; work/ inside is git-ignored")
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES), help="the base of every arm")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="experiment setting for every arm (router.train.num_workers=8); repeatable")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    args = parser.parse_args(argv)
    configure_logging()
    base = profile_router(args.profile, args.overrides)
    setup = study_setup(args.profile, base, args.overrides, args.data)
    train, val, test = study_frames(args.data, base.val_fraction)
    print(run_study(base, ARMS, args.arms, data=args.data, externals=args.external, out=Path(args.out),
                    settings={"profile": args.profile, "base": base.to_dict(), "arms": args.arms},
                    command=command_line(["python", "experiments/ablation_disease.py",
                                          *(sys.argv[1:] if argv is None else argv)]),
                    title=f"Learning the disease, not the dataset: ablation on the {args.profile} profile",
                    setup=setup, extras=study_extras(train, val, test, healthy_slices(args.healthy) if args.healthy else None),
                    selection=DISEASE_SELECTION,
                    extra_markdown=disease_markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The estimator API on your own CSV dataset: any tumour classes, any parent column (here MRI sequence).

Writes a tiny synthetic dataset (three classes, two sequences) and its CSV index, then configures a Router,
clones it, fits it, predicts and saves it. Runs in seconds on a CPU; the images are toys.

    python examples/custom_csv_dataset.py OUT_DIR
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.base import clone

from hierarchy import Router
from hierarchy.data import PreprocessConfig
from hierarchy.training import TrainConfig

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out", type=Path, help="folder for the dataset and the saved Router")
args = parser.parse_args()

# 1. A CSV index: path, label, parent group (any column name), split.
rng = np.random.default_rng(0)
rows = []
for split, n in (("train", 8), ("test", 3)):
    for label, level in (("cyst", 200), ("edema", 120), ("normal", 40)):
        for sequence in ("t1", "flair"):
            for i in range(n):
                image = np.clip(rng.normal(level + (30 if sequence == "flair" else 0), 12, (32, 32)), 0, 255)
                path = args.out / "images" / f"{split}_{label}_{sequence}_{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image.astype(np.uint8)).save(path)
                rows.append({"path": str(path), "label": label, "sequence": sequence, "split": split})
pd.DataFrame(rows).to_csv(args.out / "index.csv", index=False)

# 2. Configure, clone, fit: the class and sequence lists are learned from the frame.
index = pd.read_csv(args.out / "index.csv")
train, test = index[index["split"] == "train"], index[index["split"] == "test"]
template = Router(plane="simple_cnn", experts="simple_cnn", flat="simple_cnn", mode="frozen", weights=None,
                  expert_init="scratch", parent="sequence", preprocess=PreprocessConfig(image_size=32),
                  train=TrainConfig(epochs=1), val_fraction=0.25)
router = clone(template).fit(train)
print("classes:", router.classes_, "sequences:", router.planes_)

# 3. Predict every route, then save and load.
table = router.predict_routes(test)
accuracy = (table["pred_label"] == table["true_label"]).groupby(table["route"], sort=False).mean()
print(accuracy.rename("test accuracy").to_string())
reloaded = Router.load(router.save(args.out / "router", overwrite=True))
print("reloaded:", reloaded.predict(test.head(2))[["id", "pred_label", "pred_plane"]].to_string(index=False))

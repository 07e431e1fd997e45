"""Train a Router on synthetic phantom slices, compare its routes on the held-out test split, save it.

Runs in well under 2 minutes on a laptop CPU: the backbones are a random, frozen simple_cnn shared by
every component, so only the linear heads are fitted. The phantoms are for trying the API only; they
say nothing about real MRI.

    python examples/train_synthetic.py OUT_DIR
"""

import argparse
import tempfile
from pathlib import Path

from hierarchy import Router
from hierarchy.data import PreprocessConfig, index_dataset, make_synthetic_dataset

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out", type=Path, help="where to save the trained Router (must not hold one)")
args = parser.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    index = index_dataset(make_synthetic_dataset(Path(tmp) / "phantoms", n_per_cell_train=12, n_per_cell_test=6))
    train, test = index[index["split"] == "train"], index[index["split"] == "test"]
    router = Router(plane="simple_cnn", experts="simple_cnn", flat="simple_cnn", weights=None,
                    expert_init="scratch", mode="frozen", preprocess=PreprocessConfig(image_size=64)).fit(train)
    table = router.predict_routes(test)

accuracy = (table["pred_label"] == table["true_label"]).groupby(table["route"], sort=False).mean()
print(accuracy.rename("test accuracy").to_string())
print(f"ensemble weight of the flat model: {router.ensemble_weight_:.2f}")
print(f"saved to {router.save(args.out)}")

"""A Router mixing components: a timm backbone fine-tuned as the flat model, a scikit-learn
LogisticRegression on frozen features as the plane classifier, and frozen-feature linear experts.

Runs in seconds on synthetic phantoms (random-initialised backbones: this shows the API, not accuracy).

    python examples/mixed_components.py OUT_DIR [--timm-model resnet10t]
"""

import argparse
from pathlib import Path

from sklearn.linear_model import LogisticRegression

from hierarchy import Router
from hierarchy.data import PreprocessConfig, index_dataset, make_synthetic_dataset
from hierarchy.routing import ImageClassifier, SklearnClassifier
from hierarchy.training import TrainConfig

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out", type=Path, help="folder for the phantom data and the saved Router")
parser.add_argument("--timm-model", default="resnet10t", help="any timm.list_models() name")
args = parser.parse_args()

index = index_dataset(make_synthetic_dataset(args.out / "phantoms", n_per_cell_train=6, n_per_cell_test=3,
                                             image_size=48))
train, test = index[index["split"] == "train"], index[index["split"] == "test"]
tiny = TrainConfig(epochs=1, batch_size=16, warmup_epochs=0)
router = Router(
    plane=SklearnClassifier(LogisticRegression(max_iter=1000), backbone="simple_cnn", weights=None),
    experts="simple_cnn",  # a backbone name: trained as `mode` says (frozen features, linear heads)
    flat=ImageClassifier(args.timm_model, weights=None, mode="finetune", train_config=tiny),
    mode="frozen", weights=None, expert_init="scratch", preprocess=PreprocessConfig(image_size=48),
    train=tiny, val_fraction=0.25,
).fit(train)
print({name: type(component).__name__ for name, component in router.components_.items()})

table = router.predict_routes(test)
accuracy = (table["pred_label"] == table["true_label"]).groupby(table["route"], sort=False).mean()
print(accuracy.rename("test accuracy").to_string())
loaded = Router.load(router.save(args.out / "router", overwrite=True))
print("saved and reloaded; same predictions:", loaded.predict_routes(test).equals(table))

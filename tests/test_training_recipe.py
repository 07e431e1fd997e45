"""Runtime choice (device, bf16, channels-last), joint training with an auxiliary head, and recipe switches
(EMA, mixup/cutmix, progressive resizing), including exact resume with all of them on."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

from hierarchy.models.simple_cnn import SimpleCNN
from hierarchy.routing.trunk import head_proba, trunk_features
from hierarchy.training import (
    AuxTargetDataset,
    TrainConfig,
    attach_head,
    load_checkpoint,
    resolve_runtime,
    train,
    train_joint,
)
from hierarchy.training import runtime as runtime_module
from hierarchy.training.trainer import AUX_LOG_COLUMNS, LOG_COLUMNS


def make_data(n: int = 32, size: int = 32, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.randn(n, 1, size, size, generator=generator) + y.view(-1, 1, 1, 1).float()
    return TensorDataset(x, y)


def make_model(drop_rate: float = 0.2) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_efficientnet", num_classes=4, in_chans=1, drop_rate=drop_rate)


def plane_of(dataset: TensorDataset, unknown_every: int = 4) -> np.ndarray:
    """A 3-class auxiliary target tied to the label, unknown (-1) for every ``unknown_every``-th item."""
    aux = (dataset.tensors[1].numpy() % 3).astype(np.int64)
    aux[::unknown_every] = -1
    return aux


class CrashingDataset(Dataset):
    """Raises after ``crash_after`` items, like a run killed mid-epoch."""

    def __init__(self, base: Dataset, crash_after: int | None) -> None:
        self.base, self.crash_after, self.served = base, crash_after, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        self.served += 1
        if self.crash_after is not None and self.served > self.crash_after:
            raise RuntimeError("simulated crash")
        return self.base[index]


# -- runtime ---------------------------------------------------------------------------------------------
def test_runtime_defaults_follow_the_cpu_and_the_fp32_switches(monkeypatch):
    monkeypatch.delenv(runtime_module.AMP_ENV, raising=False)
    fp32 = resolve_runtime("off", "off", "cpu")
    assert (fp32.amp_dtype, fp32.memory_format) == (None, torch.contiguous_format)
    assert fp32.describe() == "cpu/float32/contiguous"
    monkeypatch.setattr(runtime_module, "cpu_has_fast_bf16", lambda: True)
    auto = resolve_runtime(device="cpu")  # bf16 on a CPU that runs it natively
    assert auto.describe() == "cpu/bfloat16/channels_last"
    assert resolve_runtime(device="cpu", training=True).describe() == "cpu/float32/channels_last"
    assert resolve_runtime("bf16", device="cpu", training=True).amp_dtype == torch.bfloat16
    monkeypatch.setattr(runtime_module, "cpu_has_fast_bf16", lambda: False)
    assert resolve_runtime(device="cpu").describe() == "cpu/float32/channels_last"
    monkeypatch.setenv(runtime_module.AMP_ENV, "bf16")
    assert resolve_runtime(device="cpu").amp_dtype == torch.bfloat16
    assert resolve_runtime("off", device="cpu").amp_dtype is None  # explicit beats the variable
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        resolve_runtime("fp16", device="cpu")
    with pytest.raises(ValueError, match="amp must be one of"):
        resolve_runtime("fp8")


def test_bf16_trunk_gives_float64_probabilities_close_to_fp32():
    model = make_model().eval()
    x = make_data(16).tensors[0]
    fp32 = trunk_features(model, x, amp="off")
    bf16 = trunk_features(model, x, runtime=resolve_runtime("bf16", "on", "cpu"))
    assert fp32.dtype == bf16.dtype == torch.float32
    p32, p16 = head_proba(model, fp32), head_proba(model, bf16)
    assert p32.dtype == p16.dtype == np.float64
    np.testing.assert_allclose(p16.sum(1), 1.0, atol=1e-12)
    assert np.abs(p16 - p32).max() < 0.05
    with torch.no_grad():
        reference = torch.softmax(model(x).double(), 1).numpy()
    np.testing.assert_allclose(p32, reference, atol=1e-5)


# -- joint training --------------------------------------------------------------------------------------
def test_aux_target_dataset_checks_its_targets():
    data = make_data(8)
    item = AuxTargetDataset(data, plane_of(data))[1]
    assert item[1:] == (1, 1)
    with pytest.raises(ValueError, match="one auxiliary target per item"):
        AuxTargetDataset(data, [0, 1])
    with pytest.raises(ValueError, match="-1"):
        AuxTargetDataset(data, np.full(8, -2))


def test_joint_loss_is_label_loss_plus_weighted_aux_loss_over_known_rows(tmp_path):
    # One full batch, negligible learning rate: epoch 1's training loss is the initial model's loss.
    data = make_data(12)
    aux = plane_of(data, unknown_every=3)
    base, weight = make_model(drop_rate=0.0), 0.7  # no dropout: the same forward as in training
    probe = attach_head(copy.deepcopy(base), train_joint_head_init(base, seed=5))
    with torch.no_grad():
        logits, aux_logits = base(data.tensors[0]), probe(data.tensors[0])
    known = torch.from_numpy(aux >= 0)
    expected = F.cross_entropy(logits, data.tensors[1]) + weight * F.cross_entropy(
        aux_logits[known], torch.from_numpy(aux)[known])
    config = TrainConfig(epochs=1, batch_size=12, lr=1e-12, warmup_epochs=0, amp="off", aux_weight=weight,
                         seed=5)
    result = train_joint(base, AuxTargetDataset(data, aux), AuxTargetDataset(make_data(8, seed=1),
                         plane_of(make_data(8, seed=1))), config, tmp_path, aux_classes=3, progress=False)
    assert result.history.loc[0, "train_loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert list(result.history.columns) == [*LOG_COLUMNS, *AUX_LOG_COLUMNS]


def train_joint_head_init(model: torch.nn.Module, seed: int) -> torch.nn.Linear:
    """The auxiliary head train_joint starts from (JointModel's seeded initialisation)."""
    from hierarchy.training import JointModel
    return copy.deepcopy(JointModel(model, 3, seed=seed).aux_head)


def test_train_joint_learns_both_targets_and_returns_an_attachable_aux_head(tmp_path):
    train_data, val_data = make_data(48), make_data(24, seed=1)
    val_aux = plane_of(val_data)
    config = TrainConfig(epochs=3, batch_size=8, lr=3e-3, early_stopping_patience=None)
    model = make_model()
    result = train_joint(model, AuxTargetDataset(train_data, plane_of(train_data)),
                         AuxTargetDataset(val_data, val_aux), config, tmp_path, aux_classes=3, progress=False)
    assert isinstance(result.aux_head, torch.nn.Linear) and result.aux_head.out_features == 3
    best = load_checkpoint(result.best_checkpoint)["model"]
    assert {k.split(".")[0] for k in best} == {"backbone", "aux_head"}
    assert all(torch.equal(t, best[f"backbone.{k}"]) for k, t in model.state_dict().items())
    logged = pd.read_csv(tmp_path / "log.csv")
    assert logged["val_aux_accuracy"].iloc[-1] > 0.5  # chance is 1/3
    # The plane head on a copy of the trunk: one trunk pass serves both heads.
    plane_model = attach_head(copy.deepcopy(model), result.aux_head).eval()
    model.eval()
    x = val_data.tensors[0]
    features = trunk_features(model, x, amp="off")
    np.testing.assert_allclose(head_proba(plane_model, features),
                               head_proba(plane_model, trunk_features(plane_model, x, amp="off")), atol=1e-6)
    known = val_aux >= 0
    accuracy = np.mean(head_proba(plane_model, features).argmax(1)[known] == val_aux[known])
    assert accuracy == pytest.approx(logged.loc[result.best_epoch - 1, "val_aux_accuracy"], abs=0.1)


def test_joint_training_refuses_pairs():
    with pytest.raises(ValueError, match="AuxTargetDataset"):
        train_joint(make_model(), make_data(16), make_data(8), TrainConfig(epochs=1), "unused", aux_classes=3,
                    progress=False)


# -- recipe switches -------------------------------------------------------------------------------------
def test_recipe_settings_are_validated_and_round_trip():
    config = TrainConfig(epochs=3, progressive_sizes=[16, 24], ema_decay=0.99, mixup_alpha=0.2)
    assert config.progressive_sizes == (16, 24)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert [config.image_size(e) for e in (1, 2, 3)] == [16, 24, None]
    for bad in ({"mixup_alpha": 0.2, "class_balanced": True}, {"cutmix_alpha": 1.0, "batch_size": 7},
                {"progressive_sizes": [16] * 11}, {"ema_decay": 1.0}, {"aux_weight": -1.0}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_progressive_sizes_resize_training_batches_only(tmp_path):
    model = make_model()
    seen: list[tuple[bool, int]] = []
    model.register_forward_pre_hook(lambda module, args: seen.append((module.training, args[0].shape[-1])))
    config = TrainConfig(epochs=2, batch_size=8, progressive_sizes=(24,), early_stopping_patience=None)
    train(model, make_data(16), make_data(8, seed=1), config, tmp_path, progress=False)
    train_sizes = [size for training, size in seen if training]
    assert train_sizes == [24, 24, 32, 32]
    assert {size for training, size in seen if not training} == {32}


def test_mixup_and_cutmix_mix_both_targets_with_label_smoothing(tmp_path):
    # Identical items: mixing changes neither image nor targets, so the loss must equal the smoothed plain loss.
    x = torch.randn(1, 1, 32, 32).repeat(12, 1, 1, 1)
    y, aux = torch.full((12,), 2), np.ones(12, dtype=np.int64)
    torch.manual_seed(0)
    model = SimpleCNN(num_classes=4, drop_rate=0.0)
    probe = attach_head(copy.deepcopy(model), train_joint_head_init(model, seed=0))
    with torch.no_grad():
        expected = (F.cross_entropy(model(x), y, label_smoothing=0.1)
                    + 0.5 * F.cross_entropy(probe(x), torch.from_numpy(aux), label_smoothing=0.1))
    config = TrainConfig(epochs=1, batch_size=12, lr=1e-12, warmup_epochs=0, amp="off", label_smoothing=0.1,
                         mixup_alpha=0.4, cutmix_alpha=1.0, aux_weight=0.5)
    val = AuxTargetDataset(make_data(8), plane_of(make_data(8)))
    result = train_joint(model, AuxTargetDataset(TensorDataset(x, y), aux), val, config, tmp_path / "same",
                         aux_classes=3, progress=False)
    assert result.history.loc[0, "train_loss"] == pytest.approx(expected.item(), rel=1e-5)
    # Distinct items: mixing raises the loss above the unmixed one at the same weights.
    data = make_data(12)
    unmixed = train(make_model(drop_rate=0.0), data, make_data(8), TrainConfig(
        epochs=1, batch_size=12, lr=1e-12, warmup_epochs=0, amp="off", label_smoothing=0.1), tmp_path / "a",
        progress=False)
    mixed = train(make_model(drop_rate=0.0), data, make_data(8), config, tmp_path / "b", progress=False)
    assert mixed.history.loc[0, "train_loss"] != pytest.approx(unmixed.history.loc[0, "train_loss"], rel=1e-3)


def test_ema_weights_are_evaluated_and_checkpointed(tmp_path):
    model = make_model()
    result = train(model, make_data(), make_data(8, seed=1), TrainConfig(epochs=2, batch_size=8, ema_decay=0.9,
                   early_stopping_patience=None), tmp_path, progress=False)
    last = load_checkpoint(result.last_checkpoint)
    assert last["model"].keys() == last["train_model"].keys()
    assert any(not torch.equal(last["model"][k], last["train_model"][k]) for k in last["model"])
    best = load_checkpoint(result.best_checkpoint)["model"]
    assert all(torch.equal(t, best[k]) for k, t in model.state_dict().items())


@pytest.mark.parametrize("joint", [False, True])
def test_resume_with_ema_mixup_cutmix_and_progressive_sizes_is_exact(tmp_path, joint):
    config = TrainConfig(epochs=2, batch_size=8, lr=3e-3, ema_decay=0.9, mixup_alpha=0.4, cutmix_alpha=1.0,
                         label_smoothing=0.1, progressive_sizes=(24,), early_stopping_patience=None, seed=3)
    train_data, val_data = make_data(), make_data(8, seed=1)
    if joint:
        train_data = AuxTargetDataset(train_data, plane_of(train_data))
        val_data = AuxTargetDataset(val_data, plane_of(val_data))

    def run(out, crash_after=None, resume=False):
        model = make_model()
        fit = train_joint if joint else train
        kwargs = {"aux_classes": 3} if joint else {}
        result = fit(model, CrashingDataset(train_data, crash_after), val_data, config, out, resume=resume,
                     progress=False, **kwargs)
        return model, result

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "crashed", crash_after=40)  # 32 items per epoch: mid epoch 2
    resumed_model, resumed = run(tmp_path / "crashed", resume=True)
    reference_model, reference = run(tmp_path / "reference")
    columns = [c for c in resumed.history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(resumed.history[columns], reference.history[columns])
    for key, tensor in reference_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], tensor), key
    a = load_checkpoint(tmp_path / "crashed" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "reference" / "checkpoint_last.pt")
    for key in a["train_model"]:
        assert torch.equal(a["train_model"][key], b["train_model"][key]), key

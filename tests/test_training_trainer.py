"""Trainer: schedule, logs, early stopping, loss options, checkpoints, refusal, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

from hierarchy.training import (
    TrainConfig,
    class_balanced_weights,
    load_checkpoint,
    save_checkpoint,
    train,
    warmup_cosine_factor,
    warmup_cosine_scheduler,
)
from hierarchy.training.trainer import LOG_COLUMNS

TESTS_DIR = Path(__file__).resolve().parent


def make_data(n: int = 48, size: int = 32, seed: int = 0) -> TensorDataset:
    """Four classes told apart by a brightness offset, so a few steps already learn something."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.randn(n, 1, size, size, generator=generator) + y.view(-1, 1, 1, 1).float()
    return TensorDataset(x, y)


def make_model(name: str = "test_efficientnet") -> torch.nn.Module:
    torch.manual_seed(0)
    # Dropout draws from the global RNG, so resume must restore it to repeat the run.
    kwargs = {"img_size": 32} if name.startswith("test_vit") else {"drop_rate": 0.2}
    return timm.create_model(name, num_classes=4, in_chans=1, **kwargs)


class PausingDataset(Dataset):
    """Once ``out/checkpoint_last.pt`` exists (epoch 1 is saved), the next item fetched (epoch 2) writes
    ``out/paused`` and blocks until the process is killed: a SIGKILL lands mid-epoch whatever the machine's load."""

    def __init__(self, base: Dataset, out: str) -> None:
        self.base, self.out = base, Path(out)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        if (self.out / "checkpoint_last.pt").exists():
            (self.out / "paused").touch()
            threading.Event().wait()
        return self.base[index]


RESUME_CONFIG = TrainConfig(epochs=3, batch_size=8, lr=3e-3, early_stopping_patience=None, seed=7)


def test_config_round_trip_and_unknown_keys():
    config = TrainConfig(epochs=3, grad_clip=None, monitor="val_loss")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown TrainConfig keys \\['learning_rate'\\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="monitor"):
        TrainConfig(monitor="val_auc")


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    warmup, total = 5, 25
    factors = [warmup_cosine_factor(s, warmup_steps=warmup, total_steps=total) for s in range(total)]
    assert factors[:warmup] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    decay = factors[warmup:]
    assert decay[0] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))
    assert decay[len(decay) // 2] == pytest.approx(0.5)  # the cosine's midpoint
    assert decay[-1] < 0.01

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = warmup_cosine_scheduler(optimizer, warmup_steps=warmup, total_steps=total)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1 * f for f in factors])


def test_train_writes_one_log_row_per_epoch_and_keeps_best_weights(tmp_path):
    model = make_model()
    result = train(model, make_data(), make_data(16, seed=1), TrainConfig(epochs=3, batch_size=8),
                   tmp_path, progress=False)
    assert list(result.history.columns) == list(LOG_COLUMNS)
    assert result.history["epoch"].tolist() == [1, 2, 3]
    logged = pd.read_csv(tmp_path / "log.csv")
    pd.testing.assert_frame_equal(logged, result.history, check_dtype=False)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert result.best_metric == result.history["val_balanced_accuracy"].max()
    assert result.best_metric == result.history.loc[result.best_epoch - 1, "val_balanced_accuracy"]
    best = load_checkpoint(result.best_checkpoint)
    assert best["epoch"] == result.best_epoch
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best["model"][name]), name
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_best.pt", "checkpoint_last.pt", "log.csv", "log.jsonl"]  # no .tmp left behind


def test_early_stopping_stops_when_metric_stalls(tmp_path):
    # A learning rate of 1e-12 leaves predictions unchanged, so balanced accuracy never improves.
    config = TrainConfig(epochs=10, batch_size=8, lr=1e-12, warmup_epochs=0, early_stopping_patience=2)
    result = train(make_model("test_vit"), make_data(16), make_data(8, seed=1), config, tmp_path,
                   progress=False)
    assert result.best_epoch == 1
    assert result.history["epoch"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("options", [{"label_smoothing": 0.2}, {"class_balanced": True}, {}])
def test_loss_options_reach_the_training_loss(tmp_path, options):
    # One full batch and a negligible learning rate: epoch 1's loss is the initial model's loss.
    x = make_data(12).tensors[0]
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3])
    model = make_model("test_vit")
    with torch.no_grad():
        logits = model(x)
    weight = class_balanced_weights(y, 4) if options.get("class_balanced") else None
    expected = F.cross_entropy(logits, y, weight=weight, label_smoothing=options.get("label_smoothing", 0.0))
    plain = F.cross_entropy(logits, y)
    config = TrainConfig(epochs=1, batch_size=12, lr=1e-12, warmup_epochs=0, amp="off", **options)  # fp32 loss
    result = train(model, TensorDataset(x, y), make_data(4), config, tmp_path, progress=False)
    assert result.history.loc[0, "train_loss"] == pytest.approx(expected.item(), rel=1e-5)
    if options:
        assert abs(expected.item() - plain.item()) > 1e-3


def test_class_balanced_weights_are_inverse_frequency():
    weights = class_balanced_weights(torch.tensor([0, 0, 0, 1]), 2)
    assert weights.tolist() == pytest.approx([4 / 6, 4 / 2])
    with pytest.raises(ValueError, match="classes \\[2\\] have no examples"):
        class_balanced_weights(torch.tensor([0, 1]), 3)


def test_save_checkpoint_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})

    def crash(payload, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    assert load_checkpoint(path)["epoch"] == 1


class _Arbitrary:
    pass


def test_load_checkpoint_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": _Arbitrary()}, path)
    with pytest.raises(ValueError, match="evil.pt"):
        load_checkpoint(path)


def test_refuses_to_overwrite_and_to_resume_with_other_settings(tmp_path):
    config = TrainConfig(epochs=1, batch_size=8)
    train(make_model(), make_data(16), make_data(8), config, tmp_path, progress=False, data_key={"train": "a"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError, match="resume=True"):
        train(make_model(), make_data(16), make_data(8), config, tmp_path, progress=False)
    with pytest.raises(ValueError, match="'lr'"):
        train(make_model(), make_data(16), make_data(8), TrainConfig(epochs=1, batch_size=8, lr=0.1),
              tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="other data.*'n_train': 24"):
        train(make_model(), make_data(24), make_data(8), config, tmp_path, resume=True, progress=False,
              data_key={"train": "a"})
    with pytest.raises(ValueError, match="other data"):
        train(make_model(), make_data(16), make_data(8), config, tmp_path, resume=True, progress=False,
              data_key={"train": "b"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


_CHILD = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_training_trainer import RESUME_CONFIG, PausingDataset, make_data, make_model
from hierarchy.training import train
train(make_model(), PausingDataset(make_data(), {out!r}), make_data(16, seed=1), RESUME_CONFIG, {out!r},
      progress=False)
"""


@pytest.mark.slow
def test_resume_after_sigkill_reproduces_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", _CHILD.format(tests=str(TESTS_DIR), out=str(killed))],
                             stderr=subprocess.PIPE)
    while not (killed / "paused").exists():  # the child blocks in epoch 2 until killed
        assert child.poll() is None, child.stderr.read().decode()
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    (killed / "paused").unlink()
    child.stderr.close()
    assert load_checkpoint(killed / "checkpoint_last.pt")["epoch"] == 1

    resumed_model = make_model()
    resumed = train(resumed_model, make_data(), make_data(16, seed=1), RESUME_CONFIG, killed,
                    resume=True, progress=False)
    reference_model = make_model()
    reference = train(reference_model, make_data(), make_data(16, seed=1), RESUME_CONFIG,
                      tmp_path / "reference", progress=False)

    assert resumed.best_epoch == reference.best_epoch
    columns = [c for c in LOG_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(resumed.history[columns], reference.history[columns])
    assert len(pd.read_csv(killed / "log.csv")) == 3
    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        a, b = load_checkpoint(killed / name)["model"], load_checkpoint(tmp_path / "reference" / name)["model"]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key}"
    for key, tensor in resumed_model.state_dict().items():
        assert torch.equal(tensor, reference_model.state_dict()[key]), key
    assert sorted(os.listdir(killed)) == sorted(os.listdir(tmp_path / "reference"))  # no .tmp left


def test_amp_fp16_without_cuda_is_refused_and_bf16_autocast_runs(tmp_path):
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        train(make_model(), make_data(16), make_data(8), TrainConfig(epochs=1, amp="fp16"), tmp_path / "a",
              progress=False, device="cpu")
    result = train(make_model(), make_data(16), make_data(8), TrainConfig(epochs=1, batch_size=8, amp="bf16"),
                   tmp_path / "b", progress=False, device="cpu")
    assert result.history[["train_loss", "val_loss"]].notna().all().all()


def test_non_finite_gradients_stop_training_and_name_the_fp32_switch(tmp_path):
    model = make_model()
    model.get_classifier().weight.register_hook(lambda grad: grad * float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite gradients.*amp='off'"):
        train(model, make_data(16), make_data(8), TrainConfig(epochs=1, batch_size=8, amp="bf16"), tmp_path,
              progress=False, device="cpu")
    assert not (tmp_path / "checkpoint_last.pt").exists()  # nothing half-trained is kept as a checkpoint


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast_and_channels_last(tmp_path):
    model = make_model()
    result = train(model, make_data(), make_data(16, seed=1), TrainConfig(epochs=2, batch_size=8), tmp_path,
                   progress=False, device="cuda")
    assert result.history[["train_loss", "val_loss"]].notna().all().all()
    assert next(model.parameters()).is_cuda


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    config = TrainConfig(epochs=2, batch_size=8)
    first = train(make_model(), make_data(16), make_data(8), config, tmp_path, progress=False)
    model = make_model()
    again = train(model, make_data(16), make_data(8), config, tmp_path, resume=True, progress=False)
    pd.testing.assert_frame_equal(again.history, first.history)
    assert len(pd.read_csv(tmp_path / "log.csv")) == 2
    best = load_checkpoint(first.best_checkpoint)["model"]
    assert all(torch.equal(t, best[k]) for k, t in model.state_dict().items())

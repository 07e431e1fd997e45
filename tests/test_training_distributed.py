"""Data-parallel training: 2 CPU processes under torchrun match 1 process, and resume after a kill is exact."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from hierarchy.models.simple_cnn import SimpleCNN
from hierarchy.training import TrainConfig, load_checkpoint, train
from hierarchy.training.distributed import EpochBatchShardSampler

pytestmark = pytest.mark.slow  # starts several processes

REPO = Path(__file__).resolve().parents[1]
CONFIG = dict(epochs=2, batch_size=8, lr=3e-3, amp="off", channels_last="off", early_stopping_patience=None,
              seed=11)

_SCRIPT = """
import os, signal, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_training_distributed import CONFIG, make_data, make_model
from hierarchy.training import TrainConfig, train

class KillAfter(torch.utils.data.Dataset):
    def __init__(self, base, limit):
        self.base, self.limit, self.served = base, limit, 0
    def __len__(self):
        return len(self.base)
    def __getitem__(self, index):
        self.served += 1
        if self.limit and self.served > self.limit and os.environ["RANK"] == "0":
            os.kill(os.getpid(), signal.SIGKILL)
        return self.base[index]

out, kill_after, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume"
train(make_model(), KillAfter(make_data(), kill_after), make_data(12, seed=1), TrainConfig(**CONFIG), out,
      resume=resume, progress=False)
"""


def make_data(n: int = 48, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    return TensorDataset(torch.randn(n, 1, 16, 16, generator=generator) + y.view(-1, 1, 1, 1).float(), y)


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return SimpleCNN(num_classes=4, drop_rate=0.0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(script: Path, out: Path, kill_after: int = 0, resume: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(script), str(out), str(kill_after),
               "resume" if resume else "fresh"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_batch_shards_of_all_ranks_make_up_the_one_process_batches():
    one = list(EpochBatchShardSampler(20, 8, seed=1))
    shards = [list(EpochBatchShardSampler(20, 8, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(one) == 16 and all(len(s) == 8 for s in shards)
    for b in range(2):
        assert sorted(one[b * 8:(b + 1) * 8]) == sorted(shards[0][b * 4:(b + 1) * 4] + shards[1][b * 4:(b + 1) * 4])
    sampler = EpochBatchShardSampler(20, 8, seed=1)
    sampler.set_epoch(2)
    assert list(sampler) != one
    with pytest.raises(ValueError, match="divisible"):
        EpochBatchShardSampler(20, 8, seed=1, world_size=3)


def test_two_processes_match_one_and_resume_after_a_kill_exactly(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(_SCRIPT.format(tests=str(REPO / "tests")))
    two = _torchrun(script, tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]

    single = train(make_model(), make_data(), make_data(12, seed=1), TrainConfig(**CONFIG), tmp_path / "one",
                   progress=False)
    two_history = pd.read_csv(tmp_path / "two" / "log.csv")
    for column in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(two_history[column], single.history[column], rtol=1e-4, atol=1e-5,
                                   err_msg=column)
    one_weights = load_checkpoint(tmp_path / "one" / "checkpoint_last.pt")["model"]
    two_checkpoint = load_checkpoint(tmp_path / "two" / "checkpoint_last.pt")
    assert two_checkpoint["world_size"] == 2 and len(two_checkpoint["rng"]) == 2
    for key, tensor in one_weights.items():
        torch.testing.assert_close(two_checkpoint["model"][key], tensor, rtol=1e-4, atol=1e-5, msg=key)
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))  # rank 0 wrote, once

    killed = _torchrun(script, tmp_path / "killed", kill_after=30)  # 24 items per rank and epoch: in epoch 2
    assert killed.returncode != 0
    assert load_checkpoint(tmp_path / "killed" / "checkpoint_last.pt")["epoch"] == 1
    resumed = _torchrun(script, tmp_path / "killed", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    resumed_weights = load_checkpoint(tmp_path / "killed" / "checkpoint_last.pt")["model"]
    for key, tensor in two_checkpoint["model"].items():
        assert torch.equal(resumed_weights[key], tensor), key
    columns = [c for c in two_history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "killed" / "log.csv")[columns], two_history[columns])

    with pytest.raises(ValueError, match="2 processes"):
        train(make_model(), make_data(), make_data(12, seed=1), TrainConfig(**CONFIG), tmp_path / "killed",
              resume=True, progress=False)

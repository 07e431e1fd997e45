"""The experiment under torchrun: rank 0 runs and writes everything, the other ranks only join the training."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from test_experiment import TINY, cli_args
from test_training_distributed import _free_port

from hierarchy.data import index_dataset, make_synthetic_dataset
from hierarchy.experiment import resolve_config, run_experiment
from hierarchy.experiment import runner as runner_module
from hierarchy.routing import ImageClassifier, Task
from hierarchy.routing.fitting import fit_components
from hierarchy.training import TrainConfig, load_checkpoint
from hierarchy.training.distributed import DistContext, is_main_process

pytestmark = pytest.mark.slow  # starts several processes

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "compare_flat_vs_hierarchical.py"
# Fine-tuned simple_cnn models (the trainer's data-parallel path), one epoch, a batch both processes can split.
DDP_TINY = {**TINY, "seeds": [0], "explain_images": 2, "n_bootstrap": 20, "perturbations": [],
            "router": {**TINY["router"], "mode": "finetune", "train": {"num_workers": 0, "epochs": 1, "batch_size": 8}}}


class FakeRanks(DistContext):
    """A two-process context without a process group: ``broadcast`` records what rank 0 sends, and a
    following rank receives ``jobs`` in order."""

    def __init__(self, rank: int, jobs: list | None = None) -> None:
        super().__init__(rank=rank, world_size=2)
        object.__setattr__(self, "sent", [])
        object.__setattr__(self, "jobs", list(jobs or []))

    def broadcast(self, obj):
        if self.is_main:
            self.sent.append(pickle.loads(pickle.dumps(obj)))  # what the other ranks would receive
            return obj
        return self.jobs.pop(0)

    def barrier(self) -> None:
        pass


def test_a_following_rank_runs_the_shared_jobs_and_writes_nothing(tmp_path, monkeypatch):
    ran = []
    follower = FakeRanks(1, jobs=[lambda: ran.append("seed 0"), lambda: ran.append("seed 1"), None])
    monkeypatch.setattr(runner_module, "init_distributed", lambda device: follower)
    config = resolve_config("demo", overrides=DDP_TINY)
    assert run_experiment(config, data_root=None, out_dir=tmp_path / "report") is None
    assert ran == ["seed 0", "seed 1"] and not follower.jobs
    assert not (tmp_path / "report").exists()  # no audit, split, stage log, predictions or report


def test_rank_zero_shares_exactly_the_training_calls(tmp_path, monkeypatch):
    leader = FakeRanks(0)
    monkeypatch.setattr(runner_module, "init_distributed", lambda device: leader)
    config = resolve_config("demo", overrides=DDP_TINY)
    summary = run_experiment(config, data_root=None, out_dir=tmp_path / "report")
    assert (tmp_path / "report" / "report.md").exists() and summary["seeds"] == [0]
    jobs = leader.sent
    assert [job.func.__name__ for job in jobs[:-1]] == ["_fit_router"] and jobs[-1] is None
    assert len(jobs[0].args[1]) + len(jobs[0].args[2]) > 0  # the split is sent, the others need not read it

    leader.sent.clear()  # a resumed run trains nothing, but still releases the other ranks
    run_experiment(config, data_root=None, out_dir=tmp_path / "report")
    assert leader.sent == [None]


def test_only_rank_zero_writes_the_frozen_feature_cache(tmp_path, monkeypatch):
    root = make_synthetic_dataset(tmp_path / "data", seed=0, n_per_cell_train=2, n_per_cell_test=1, image_size=32)
    frame = index_dataset(root)
    frame = frame[frame["split"] == "train"].reset_index(drop=True)
    model = ImageClassifier("simple_cnn", Task("label", tuple(sorted(frame["label"].unique()))), weights=None,
                            mode="frozen", train_config=TrainConfig(num_workers=0))
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    fit_components({"flat": model}, frame, frame, tmp_path / "rank1")
    assert not (tmp_path / "rank1").exists()
    monkeypatch.setenv("RANK", "0")
    fit_components({"flat": model}, frame, frame, tmp_path / "rank0")
    assert list((tmp_path / "rank0" / "features").glob("features-*.npy"))


def test_two_processes_run_the_experiment_and_rank_zero_reports(tmp_path):
    out = tmp_path / "report"
    args = [*cli_args(out=out, **DDP_TINY), "--set", f"synthetic={json.dumps(TINY['synthetic'])}"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), str(SCRIPT), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "report:" in done.stdout and (out / "report.md").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert "hierarchical" in summary["routes"] and "flat" in summary["routes"]
    assert "torchrun --standalone --nproc_per_node 2" in (out / "report.md").read_text()
    flat = out / "work" / "seed_0" / "training" / "flat"
    assert load_checkpoint(flat / "checkpoint_last.pt")["world_size"] == 2  # trained data-parallel
    assert len((flat / "log.csv").read_text().splitlines()) == 2  # one epoch, logged once (by rank 0)

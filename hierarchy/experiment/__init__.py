"""The flat-vs-hierarchical experiment behind ``experiments/compare_flat_vs_hierarchical.py``."""

from hierarchy.experiment.profiles import PROFILES, ExperimentConfig, resolve_config
from hierarchy.experiment.runner import run_experiment
from hierarchy.settings import parse_override

__all__ = ["PROFILES", "ExperimentConfig", "parse_override", "resolve_config", "run_experiment"]

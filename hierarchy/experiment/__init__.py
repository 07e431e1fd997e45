"""The flat-vs-hierarchical experiment behind ``experiments/compare_flat_vs_hierarchical.py``."""

from hierarchy.experiment.profiles import PROFILES, ExperimentConfig, parse_override, resolve_config
from hierarchy.experiment.runner import run_experiment

__all__ = ["PROFILES", "ExperimentConfig", "parse_override", "resolve_config", "run_experiment"]

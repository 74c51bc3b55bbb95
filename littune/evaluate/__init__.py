"""Evaluation for LiT (arXiv 2111.07991): retrieval, zero-shot, linear probe, reports.

Model-agnostic cores: they take embeddings (torch tensors, L2-normalised) or
features and return named metrics as dicts of floats.
"""

from littune.evaluate.classnames import (
    get_classnames,
    imagenet_classnames,
    load_class_aliases,
    load_classnames,
    synset_classnames,
)
from littune.evaluate.probe import linear_probe
from littune.evaluate.report import (
    plot_confusion,
    plot_per_class,
    plot_retrieval_bars,
    plot_training_curves,
    write_report,
)
from littune.evaluate.retrieval import retrieval_metrics, retrieval_metrics_full
from littune.evaluate.templates import get_templates, list_template_sets
from littune.evaluate.zeroshot import build_classifier, zeroshot_metrics

__all__ = [
    "build_classifier",
    "get_classnames",
    "get_templates",
    "imagenet_classnames",
    "linear_probe",
    "list_template_sets",
    "load_class_aliases",
    "load_classnames",
    "plot_confusion",
    "plot_per_class",
    "plot_retrieval_bars",
    "plot_training_curves",
    "retrieval_metrics",
    "retrieval_metrics_full",
    "synset_classnames",
    "write_report",
    "zeroshot_metrics",
]

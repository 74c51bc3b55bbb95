"""Evaluation for LiT (arXiv 2111.07991): retrieval, zero-shot, linear probe, reports.

Model-agnostic cores: they take embeddings (torch tensors, L2-normalised) or
features and return named metrics as dicts of floats. Names are imported on first use
(``littune.lazy``): classifying an image needs neither scikit-learn nor matplotlib.
"""
from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".classnames": ["get_classnames", "imagenet_classnames", "load_class_aliases", "load_classnames", "resolve_classnames",
                    "synset_classnames"],
    ".probe": ["linear_probe"],
    ".report": ["plot_confusion", "plot_per_class", "plot_retrieval_bars", "plot_training_curves", "write_report"],
    ".retrieval": ["retrieval_metrics", "retrieval_metrics_full"],
    ".templates": ["get_templates", "list_template_sets"],
    ".zeroshot": ["build_classifier", "zeroshot_metrics"],
})

"""What users call after training: load a model, embed, zero-shot classify, index and search, export.

    import littune
    lit = littune.load("runs/demo/latest")
    lit.classify(["photo.jpg"], ["cat", "dog", "car"])
    index = lit.build_index("photos/", "photos.index")      # or littune.load_index("photos.index")
    index.search("a dog catching a frisbee", k=10)

Names are imported on first use (``littune.lazy``).
"""
from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".model": ["LiT", "load", "parse_labels", "DEFAULT_TEMPLATES", "load_index", "BadImageWarning"],
    ".index": ["ImageIndex", "Hit", "build_index"],
    ".options": ["IndexOptions"],
})

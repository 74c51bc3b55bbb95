"""What users call after training: load a model, embed, zero-shot classify, index and search, export.

    import littune
    lit = littune.load("runs/demo/latest")
    lit.classify(["photo.jpg"], ["cat", "dog", "car"])
    index = lit.build_index("photos/", "photos.index")      # or littune.load_index("photos.index")
    index.search("a dog catching a frisbee", k=10)
"""
from .index import Hit, ImageIndex, IndexOptions, build_index
from .model import DEFAULT_TEMPLATES, LiT, load, load_index, parse_labels

__all__ = ["LiT", "load", "parse_labels", "DEFAULT_TEMPLATES", "ImageIndex", "IndexOptions", "Hit",
           "build_index", "load_index"]

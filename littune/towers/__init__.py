"""Image and text towers behind registries (declared in ``catalog.py``, built on first use).

Names are imported on first use (``littune.lazy``): listing the towers needs no torch.
"""
from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".catalog": ["IMAGE_TOWERS", "TEXT_TOWERS", "list_image_towers", "list_text_towers"],
    ".image": ["ImageTower", "create_image_tower"],
    ".text": ["TextTower", "Tokenizer", "create_text_tower"],
    ".lock": ["LOCK_MODES", "fingerprint", "parse_setting"],
    ".preprocess": ["Preprocess"],
    ".text_scratch": ["train_tokenizer", "wrap_tokenizer"],
})

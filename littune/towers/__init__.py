"""Image and text towers behind registries; importing this package registers every family."""
from . import image_hf, image_timm, text_hf, text_scratch  # noqa: F401  (registration)
from .image import IMAGE_TOWERS, ImageTower, create_image_tower, list_image_towers
from .lock import LOCK_MODES, fingerprint, parse_setting
from .preprocess import Preprocess
from .text import TEXT_TOWERS, TextTower, Tokenizer, create_text_tower, list_text_towers
from .text_scratch import train_tokenizer, wrap_tokenizer

__all__ = [
    "IMAGE_TOWERS", "TEXT_TOWERS", "ImageTower", "TextTower", "Tokenizer", "Preprocess", "LOCK_MODES",
    "create_image_tower", "create_text_tower", "list_image_towers", "list_text_towers",
    "fingerprint", "parse_setting", "train_tokenizer", "wrap_tokenizer",
]

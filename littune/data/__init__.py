"""Data: safe image decoding, image-text sources, Flickr8k, labelled folders, downloads.

Names are imported on first use (``littune.lazy``).
"""
from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".flickr8k": ["Flickr8k"],
    ".folders": ["list_labelled_images"],
    ".images": ["BadImage", "BadInput", "BadInputLog", "load_image"],
    ".open": ["open_source"],
    ".sources": ["CsvSource", "JsonlSource", "Record", "Source", "WebDatasetSource"],
})

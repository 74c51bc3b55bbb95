"""Data: safe image decoding, image-text sources, Flickr8k, labelled folders, downloads."""

from littune.data.flickr8k import Flickr8k
from littune.data.folders import list_labelled_images
from littune.data.images import BadImage, BadInput, BadInputLog, load_image
from littune.data.open import open_source
from littune.data.sources import CsvSource, JsonlSource, Record, Source, WebDatasetSource

__all__ = [
    "BadImage",
    "BadInput",
    "BadInputLog",
    "CsvSource",
    "Flickr8k",
    "JsonlSource",
    "Record",
    "Source",
    "WebDatasetSource",
    "list_labelled_images",
    "load_image",
    "open_source",
]

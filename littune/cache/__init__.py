"""The locked-image embedding cache: write once with the locked tower, read many times."""
from .items import ImageItem, group_records, load_items
from .manifest import CacheMismatch, Manifest
from .reader import EmbeddingCache
from .writer import EmbedOptions, embed_items
from .api import embed, ensure_cache
from .naming import auto_cache_dir, canonical_spec, default_cache_root

__all__ = ["ImageItem", "group_records", "load_items", "CacheMismatch", "Manifest", "EmbeddingCache",
           "EmbedOptions", "embed_items", "embed", "ensure_cache", "default_cache_root", "auto_cache_dir",
           "canonical_spec"]

"""The locked-image embedding cache: write once with the locked tower, read many times.

Names are imported on first use (``littune.lazy``): the CLI reads ``EmbedOptions`` without torch.
"""
from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".items": ["ImageItem", "content_fingerprint", "group_records", "load_items"],
    ".manifest": ["CacheCorrupt", "CacheMismatch", "Manifest"],
    ".verify": ["VerifyReport", "check_cache"],
    ".audit": ["verify_cache"],
    ".reader": ["EmbeddingCache"],
    ".columns": ["MetadataColumn"],
    ".sources": ["check_sources"],
    ".synth": ["write_synthetic"],
    ".options": ["EmbedOptions", "auto_shard_size"],
    ".writer": ["embed_items"],
    ".api": ["embed", "ensure_cache"],
    ".naming": ["default_cache_root", "auto_cache_dir", "canonical_spec"],
})

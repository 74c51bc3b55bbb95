"""Training tests share the cache tests' tiny locked tower (fixed weights in a file) and tokenizer."""
from tests.cache.conftest import other_tower_weights, tokenizer_file, tower, tower_weights  # noqa: F401  (fixtures)

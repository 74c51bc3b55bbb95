"""Fixtures for the embedding-cache tests: a tiny locked tower with fixed weights, tiny data."""
from __future__ import annotations

from pathlib import Path

import pytest

from .tiny_data import load_tower, save_tokenizer, save_tower_weights


@pytest.fixture(scope="session")
def tower_weights(tmp_path_factory) -> Path:
    return save_tower_weights(tmp_path_factory.mktemp("tower") / "test_vit.safetensors", seed=0)


@pytest.fixture(scope="session")
def other_tower_weights(tmp_path_factory) -> Path:
    return save_tower_weights(tmp_path_factory.mktemp("tower_other") / "test_vit.safetensors", seed=1)


@pytest.fixture(scope="session")
def tower(tower_weights):
    return load_tower(tower_weights)


@pytest.fixture(scope="session")
def tokenizer_file(tmp_path_factory) -> Path:
    return save_tokenizer(tmp_path_factory.mktemp("tokenizer") / "tokenizer.json")

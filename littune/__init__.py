"""littune: LiT, Locked-image Text tuning.

``littune.load(run_or_export)`` returns a model to embed, classify and search with (see
``littune.infer``); the rest of the package is reached by its modules.
"""


def load(path, device: str = "auto"):
    """A run directory or an export folder -> ``littune.infer.LiT`` (embed_images, embed_texts, classify, ...).

    ``device``: auto (the GPU when CUDA is available, else the CPU) | cpu | cuda[:N].
    """
    from .infer import load as _load

    return _load(path, device=device)


def load_index(path, model=None, backend=None, device: str = "auto"):
    """An index folder made by ``littune index`` -> ``littune.infer.ImageIndex`` (``search(query, k)``)."""
    from .infer import load_index as _load_index

    return _load_index(path, model=model, backend=backend, device=device)


__all__ = ["load", "load_index"]

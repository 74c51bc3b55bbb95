"""The local web app of ``littune serve``: zero-shot classification and text-to-image search.

Names are imported on first use (``littune.lazy``): ``ServeLimits`` without FastAPI or torch.
"""
from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".app": ["create_app"],
    ".limits": ["ServeLimits"],
    ".server": ["build_app", "serve"],
})

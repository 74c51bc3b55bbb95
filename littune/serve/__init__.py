"""The local web app of ``littune serve``: zero-shot classification and text-to-image search."""
from .app import create_app
from .limits import ServeLimits
from .server import build_app, serve

__all__ = ["create_app", "ServeLimits", "build_app", "serve"]

"""Progress bars that obey: littune's own take ``progress=False``; this turns off the third-party ones.

transformers draws a "Loading weights" bar on every ``from_pretrained`` and huggingface_hub one per
download, whatever the caller asked for. Both read ``HF_HUB_DISABLE_PROGRESS_BARS`` when they are
imported (here or in a worker process), and both have a switch for when they already are.
"""
from __future__ import annotations

import os
import sys


def quiet_third_party_bars() -> None:
    """No transformers or huggingface_hub progress bars in this process and the processes it starts."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()

"""Studies: a grid of settings trained at equal steps, evaluated by one suite, reported together.

Names are imported on first use (``littune.lazy``).
"""
from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".config": ["StudyConfig", "load_study_config"],
    ".report": ["write_study_report"],
    ".runner": ["run_study", "run_setting", "collect_results"],
})

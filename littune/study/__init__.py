"""Studies: a grid of settings trained at equal steps, evaluated by one suite, reported together."""
from .config import StudyConfig, load_study_config
from .report import write_study_report
from .runner import collect_results, run_setting, run_study

__all__ = ["StudyConfig", "load_study_config", "run_study", "run_setting",
           "collect_results", "write_study_report"]

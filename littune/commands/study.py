"""``littune study``: train and evaluate a grid of settings (e.g. the paper's lock settings)."""
from __future__ import annotations

import argparse
import json

from .base import add_json, add_progress, command


@command("study", "train and evaluate a grid of settings at equal steps (configs/study/*.yaml); resumable")
def _study(p: argparse.ArgumentParser):
    p.add_argument("--config", required=True, help="study YAML (see configs/study/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides of the study, e.g. out_dir=runs/s2 'common=[train.steps=10]'")
    p.add_argument("--setting", action="append", default=None, metavar="NAME",
                   help="run only this setting (repeatable): one process per setting, then --report "
                        "(default: every setting, one after another)")
    p.add_argument("--report", action="store_true",
                   help="only (re)write the report from the finished settings; exit 2 when none has finished")
    add_json(p, "the finished settings' results")
    add_progress(p)

    def run(a: argparse.Namespace) -> int:
        from ..study import collect_results, load_study_config, run_study, write_study_report
        from ..study.report import study_table

        study = load_study_config(a.config, a.overrides)
        if a.report:
            results = collect_results(study)
            if not results:
                raise FileNotFoundError(f"no setting of {a.config} has finished yet (none under {study.out_dir}): "
                                        f"nothing to report; run `littune study --config {a.config}` first")
            write_study_report(study, results)
        else:
            results = run_study(study, only=a.setting, progress=not a.no_progress)
        if a.json:
            print(json.dumps(results, indent=2))
        else:
            print(study_table(results))
            print(f"\nreport: {study.out_dir}/study.md")
        return 0

    return run

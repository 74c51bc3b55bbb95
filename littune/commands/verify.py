"""``littune verify MODEL``: recompute every weight group's fingerprint and compare with the record."""
from __future__ import annotations

import argparse
import json
import sys

from .base import add_json, command


@command("verify", "check that a run, checkpoint or export holds exactly the weights it recorded")
def _verify(p: argparse.ArgumentParser):
    p.add_argument("model", help="run directory, RUN/checkpoints/step_N, or export folder")
    add_json(p, "every group's recorded and computed fingerprint")

    def run(a: argparse.Namespace) -> int:
        from ..runs.verify import verify_model

        report = verify_model(a.model)
        if a.json:
            print(json.dumps({"path": str(report.path), "kind": report.kind, "ok": report.ok,
                              "groups": {r.group: {"recorded": r.recorded, "computed": r.computed, "ok": r.ok}
                                         for r in report.rows}}))
        else:
            print(f"{report.path} ({report.kind})")
            for r in report.rows:
                state = "ok" if r.recorded == r.computed else ("not recorded" if r.recorded is None else
                                                               f"MISMATCH: {r.recorded} recorded")
                print(f"  {r.group:<12} {r.computed}  {state}")
        if not report.ok:
            print(f"littune verify: error: {', '.join(report.mismatched)} differ from the recorded fingerprints: "
                  f"{report.path} does not hold the weights it was written with (restore it, or train/export "
                  "again)", file=sys.stderr)
            return 2
        return 0

    return run

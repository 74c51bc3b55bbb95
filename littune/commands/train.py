"""``littune train``: LiT training from a config file with dotted overrides."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .base import add_json, add_progress, command


def summary_line(run_dir: str, s: dict) -> str:
    """One line a person reads: steps, time, where the run is, the first metric of each evaluation."""
    minutes = s.get("train_s", 0.0) / 60
    evals = "; ".join(f"{name} " + ", ".join(f"{k} {v:.3f}" for k, v in list(m.items())[:2])
                      for name, m in s.get("evals", {}).items())
    return (f"trained {s['step']} steps in {minutes:.1f} min into {run_dir} (temperature {s['temperature']:.1f}"
            + (f"; {evals}" if evals else "") + ")")


@command("train", "train a LiT model from a config (configs/*.yaml) with key=value overrides")
def _train(p: argparse.ArgumentParser):
    p.add_argument("--config", default=None, help="experiment YAML (see configs/; default: the built-in defaults)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides, e.g. train.batch_size=1024 model.text.lock=L")
    p.add_argument("--resume", action="store_true", help="continue the run in train.out_dir from its last checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    add_json(p, "the run's summary (run_dir, step, train_s, temperature, fingerprints, evals)")
    add_progress(p)

    def run(a: argparse.Namespace) -> int:
        from .. import distributed
        from ..config.ranges import check_key
        from ..train import load_config, to_yaml, train

        overrides = [*a.overrides, *(["train.progress=false"] if a.no_progress else [])]
        cfg = load_config(a.config, overrides)
        if a.print_config:
            print(to_yaml(cfg), end="")
            return 0
        check_key(cfg, "train.collective_timeout_s")  # the process group's timeout, needed before validate
        distributed.init_from_env(timeout_s=cfg.train.collective_timeout_s)
        try:
            summary = train(cfg, resume=a.resume)
        except Exception as e:
            if not distributed.is_peer_failure(e):
                raise
            from ..runs import latest_checkpoint

            last = latest_checkpoint(Path(cfg.train.out_dir))
            raise distributed.PeerLost(
                f"lost contact with another process of this run ({distributed.first_line(e)})\n  a process or "
                f"node stopped, or hung longer than train.collective_timeout_s={cfg.train.collective_timeout_s:g}; "
                f"last checkpoint: {last or 'none'}: start every node again with --resume") from e
        if distributed.is_main():
            print(json.dumps({"run_dir": cfg.train.out_dir, **summary}) if a.json
                  else summary_line(cfg.train.out_dir, summary))
        return 0

    return run

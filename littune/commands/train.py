"""``littune train``: LiT training from a config file with dotted overrides."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .base import command


@command("train", "train a LiT model from a config (configs/*.yaml) with key=value overrides")
def _train(p: argparse.ArgumentParser):
    p.add_argument("--config", default=None, help="experiment YAML (see configs/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.batch_size=1024 model.text.lock=L")
    p.add_argument("--resume", action="store_true", help="continue the run in train.out_dir from its last checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    def run(a: argparse.Namespace) -> int:
        from .. import distributed
        from ..config import validate
        from ..train import load_config, to_yaml, train

        cfg = load_config(a.config, a.overrides)
        if a.print_config:
            print(to_yaml(cfg), end="")
            return 0
        validate(cfg)  # before the process group: it needs train.collective_timeout_s
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
            print(json.dumps({"run_dir": cfg.train.out_dir, **summary}))
        return 0

    return run

"""Measure one demo recipe on the tuning splits: Flickr8k dev retrieval and flowers/train zero-shot.

    python benchmarks/tune_demo.py NAME [key=value ...]      e.g.  model.text.locked_blocks=6

Trains the demo's config (littune/resources/configs/demo.yaml) plus the overrides on Flickr8k train
(embedding caches reused from ~/.cache/littune), then prints one JSON line with dev R@K and
zero-shot top-1 on flowers/train for two template sets. The test splits are never touched here:
they are for `littune demo` to report. Writes docs/results/tune_demo-NAME.json (benchmarks/common.py).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, print_json  # noqa: E402

from littune.demo import FLOWER_NAMES  # noqa: E402
from littune.evaluate.suite import eval_zeroshot  # noqa: E402
from littune.runs import load_run  # noqa: E402
from littune.train import load_config, train  # noqa: E402


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    name, overrides = sys.argv[1], sys.argv[2:]
    work = Path(tempfile.mkdtemp(prefix="littune-tune-"))
    out = work / name
    f8k = SHARED / "flickr8k"
    cfg = load_config(Path(__file__).resolve().parents[1] / "littune" / "resources" / "configs" / "demo.yaml", [
        f"data.train=flickr8k:{f8k}:train", f"data.dev=flickr8k:{f8k}:dev", f"train.out_dir={out}",
        "train.progress=false", "train.eval_every=0", "train.ckpt_every=0", *overrides])
    t0 = time.time()
    summary = train(cfg)
    train_s = time.time() - t0
    model, _ = load_run(out)
    names = work / "flowers_classnames.csv"
    names.write_text("".join(f"{k},{v}\n" for k, v in FLOWER_NAMES.items()))
    result = {"name": name, "overrides": overrides, "train_s": round(train_s), "s_per_step": round(train_s / cfg.train.steps, 2),
              "temperature": round(model.temperature, 2), **{f"dev_{k}": round(v, 4) for k, v in summary["dev"].items()}}
    for templates in ("flowers", "clip_imagenet"):
        z = eval_zeroshot(model, SHARED / "flowers" / "train", str(names), templates, None, False)
        result[f"flowers_train_zeroshot_{templates}"] = round(z["top1"], 4)
    shutil.rmtree(work, ignore_errors=True)
    print_json(result, variant=name)  # docs/results/tune_demo-NAME.json


if __name__ == "__main__":
    main()

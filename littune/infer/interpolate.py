"""Weight-space interpolation of a trained run's text tower with its pre-trained weights (WiSE-FT).

    interpolate_run("runs/demo", alpha=0.5, out="runs/demo-a0.5")     # a new run folder
    sweep_run("runs/demo", [0, 0.25, 0.5, 0.75, 1], evals=None)         # the run's own evaluations

WiSE-FT (Wortsman et al. 2022, arXiv 2109.01903) and PAINT (Ilharco et al. 2022, arXiv 2208.05592)
keep a fine-tuned model's gains while recovering what the pre-trained one knew by averaging the two
in weight space: theta(alpha) = (1 - alpha) theta_0 + alpha theta_1. Only the text tower is mixed;
the heads, temperature and bias stay as trained (the image tower is locked). The mixing itself lives
in ``towers/tuning.py`` (training applies it too, ``train.interpolate_alpha``); this module reads and
writes run folders and draws the curve of a sweep.

The pre-trained weights are rebuilt from the run's ``config.yaml`` and must have the fingerprint
that training recorded in ``model_info.json`` (``text_tuning.base_fingerprint``); a LoRA run holds
them itself (under its adapters, checked against the same fingerprint) and scales its adapters instead.
"""
from __future__ import annotations

import copy
import functools
import json
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ..config import ExperimentConfig, load_config
from ..distributed import resolve_device
from ..evaluate.report import save_figure
from ..evaluate.suite import EvalSuite
from ..model import LiTModel
from ..runs import (is_export, is_run_dir, latest_checkpoint, load_run, read_info, save_model, write_config,
                    write_summary)
from ..runs.target import temp_folder
from ..runs.files import CACHE_MANIFEST_FILE, CONFIG_FILE, INFO_FILE, MODEL_FILE, TEXT_CACHE_MANIFEST_FILE
from ..towers.tuning import check_alpha, interpolate, merge_lora

CURVE_KEYS = ("i2t_r1", "t2i_r1", "top1")  # plotted against alpha: retrieval R@1 and zero-shot top-1


def load_trained(run: str | Path) -> tuple[LiTModel, ExperimentConfig]:
    """The run's trained weights, before any mixing, with the pre-trained text tower's recorded
    fingerprint; refuses what cannot be mixed, naming the file or key."""
    run = Path(run)
    if is_export(run):
        raise ValueError(f"{run} is an export; interpolate the run it was exported from (its config.yaml names "
                         "the pre-trained text tower, its model_info.json that tower's fingerprint)")
    if not is_run_dir(run):
        raise ValueError(f"{run} is not a littune run: it needs {CONFIG_FILE} and {MODEL_FILE}")
    cfg = load_config(run / CONFIG_FILE)
    t, checkpoint = cfg.model.text, None
    if t.name == "scratch" or t.lock != "U" or not t.pretrained:
        raise ValueError(f"{run / CONFIG_FILE}: model.text (name={t.name}, lock={t.lock}, pretrained={t.pretrained}) "
                         "has no pre-trained weights to mix with; interpolation needs a minilm/hf: tower with lock=U")
    if cfg.train.interpolate_alpha is not None:  # model.safetensors holds a mix already
        checkpoint = latest_checkpoint(run)
        if checkpoint is None:
            raise ValueError(f"{run / CONFIG_FILE}: train.interpolate_alpha={cfg.train.interpolate_alpha}: its weights "
                             "are a mix and no checkpoint holds the trained ones; interpolate the run it came from")
    model, cfg = load_run(run, checkpoint)
    recorded = ((read_info(run) or {}).get("text_tuning") or {}).get("base_fingerprint")
    if recorded is None:
        raise ValueError(f"{run / INFO_FILE} records no fingerprint of the pre-trained text tower "
                         "(text_tuning.base_fingerprint; runs trained before littune recorded it cannot be mixed)")
    if model.text.tune == "lora":  # the run holds its pre-trained weights, under the adapters
        have = merge_lora(interpolate(copy.deepcopy(model.text), 0.0)).fingerprint()
        where = (checkpoint or run) / MODEL_FILE
    else:  # rebuilt from the source named in config.yaml
        have, where = model.text.base_fingerprint, f"model.text.name={t.name}"
    if have != recorded:
        raise ValueError(f"{run / INFO_FILE}: the pre-trained text tower ({where}) now has fingerprint {have}, but "
                         f"the run was trained from {recorded}: it changed, so the mix would not be with the tower "
                         "the run was tuned from")
    return model, cfg


def _pretrained(cfg: ExperimentConfig):
    """A zero-argument builder of the pre-trained text tower, built at most once."""
    return functools.cache(cfg.model.text.build)


def interpolate_run(run: str | Path, alpha: float, out: str | Path) -> dict[str, Any]:
    """Write ``out``: a run folder whose text tower is (1 - alpha) pre-trained + alpha trained."""
    alpha, run, out = check_alpha(alpha, "--alpha"), Path(run), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} exists and is not empty; choose a new folder")
    model, cfg = load_trained(run)
    interpolate(model.text, alpha, _pretrained(cfg), where=f"model.text.name={cfg.model.text.name}")
    cfg = copy.deepcopy(cfg)
    cfg.train.interpolate_alpha, cfg.train.out_dir = alpha, str(out)
    tmp = temp_folder(out)  # written whole, then renamed: no half folder on a kill; a unique name
    summary = {"interpolated_from": str(run.resolve()), "interpolate_alpha": alpha,
               "temperature": model.temperature, "fingerprints": model.fingerprints()}
    try:
        save_model(model, tmp)
        write_config(tmp, cfg)
        for name in (CACHE_MANIFEST_FILE, TEXT_CACHE_MANIFEST_FILE):
            if (run / name).is_file():
                shutil.copy(run / name, tmp / name)
        write_summary(tmp, summary)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return {"out": str(out), **summary}


def parse_alphas(text: str | Sequence[float], key: str = "--sweep") -> list[float]:
    """'0,0.25,0.5' -> [0.0, 0.25, 0.5]; each in [0, 1]."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        alphas = [float(a) for a in items if str(a).strip()]
    except ValueError:
        raise ValueError(f"{key}={text!r}: give numbers in [0, 1] separated by commas, e.g. 0,0.25,0.5,0.75,1") from None
    if not alphas:
        raise ValueError(f"{key}: no alphas given")
    return [check_alpha(a, key) for a in alphas]


def sweep_suite(evals_file: str | Path | None = None, evals: Mapping[str, Mapping] | None = None,
                cache_root: str | Path | None = None, progress: bool = True) -> EvalSuite | None:
    """A sweep's evaluations: an experiment YAML's ``evals`` (and its ``data.dev``) plus ``evals``
    (``{name: {kind, ...options}}``); None when neither is given."""
    found: list = []
    if evals_file:
        ecfg = load_config(evals_file)
        ecfg.data.cache_root = str(cache_root) if cache_root else ecfg.data.cache_root
        found += EvalSuite.from_config(ecfg, progress).evals.values()
    if evals:
        found += EvalSuite.from_evals(evals, cache_root, progress).evals.values()
    return EvalSuite(found) if found else None


def sweep_run(run: str | Path, alphas: str | Sequence[float], suite: EvalSuite | None = None,
              report: str | Path | None = None, progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Evaluate the run mixed at each alpha; write the curve (table + plot) into ``report``.

    ``suite``: the evaluations (``sweep_suite``); None: the run's own (its ``evals`` and
    ``data.dev``: the tuning splits it was trained with). ``device``: where they run (auto|cpu|cuda[:N]).
    """
    alphas = parse_alphas(alphas)
    model, cfg = load_trained(run)
    model = model.to(resolve_device(device))
    suite = suite or EvalSuite.from_config(cfg, progress)
    if not len(suite):
        raise ValueError(f"{Path(run) / CONFIG_FILE} names no evaluations (evals, data.dev): "
                         "pass --evals FILE or --data / --zeroshot")
    trained = {k: v.clone() for k, v in model.text.state_dict().items()}
    pretrained = _pretrained(cfg)
    rows = []
    for alpha in tqdm(alphas, desc="interpolate", unit="alpha", disable=not progress):
        model.text.load_state_dict(trained)
        interpolate(model.text, alpha, pretrained, where=f"model.text.name={cfg.model.text.name}")
        rows.append({"alpha": alpha, **suite.scalars(suite.run(model))})
    folder = Path(report) if report else Path(run) / "report" / "interpolation"
    return {"rows": rows, "report": str(write_curve(rows, folder, f"interpolation sweep: {run}"))}


def write_curve(rows: list[dict[str, Any]], folder: Path, title: str) -> Path:
    """interpolation.md (a table: one row per alpha), interpolation.json and interpolation.png."""
    folder.mkdir(parents=True, exist_ok=True)
    plot = plot_curve(rows, folder / "interpolation.png")
    lines = [f"# {title}", "", "alpha = 0: the pre-trained text tower (through the trained head); "
             "1: the trained one.", "", *curve_table(rows), "", f"![interpolation]({plot.name})", ""]
    (folder / "interpolation.json").write_text(json.dumps(rows, indent=2) + "\n")
    out = folder / "interpolation.md"
    out.write_text("\n".join(lines))
    return out


def curve_table(rows: list[dict[str, Any]]) -> list[str]:
    """The sweep as a markdown table: one row per alpha, one column per metric."""
    keys = [k for k in rows[0] if k != "alpha"]
    lines = ["| alpha | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    return lines + [f"| {r['alpha']:.2f} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |" for r in rows]


def plot_curve(rows: list[dict[str, Any]], out_png: Path) -> Path:
    """Retrieval R@1 and zero-shot top-1 against alpha, one line per evaluation metric."""
    fig = Figure(figsize=(5.6, 3.8))
    ax = fig.subplots()
    x = [r["alpha"] for r in rows]
    for key in rows[0]:
        if key.rsplit("/", 1)[-1] in CURVE_KEYS:
            ax.plot(x, [r[key] for r in rows], marker="o", label=key)
    ax.set_xlabel("alpha (0: pre-trained text tower, 1: trained)")
    ax.set_ylabel("score")
    ax.legend(fontsize=8)
    ax.set_title("weight-space interpolation (WiSE-FT)")
    return save_figure(fig, out_png)

"""The model card of every export: ``README.md`` in the Hugging Face model-card format, plus ``metrics.json``.

Model hubs read the card's YAML front matter (https://huggingface.co/docs/hub/model-cards):
``library_name``, ``tags``, ``license``, ``datasets``, ``pipeline_tag``. The body says what the model
is (LiT, Zhai et al. 2022, arXiv 2111.07991), its towers and lock setting, what it was trained on and
for how long, its evaluation results from the run's report (``report/metrics.json``), the weight
fingerprints, and how to load it with littune and with open_clip. ``metrics.json`` holds the same
facts for programs: ``{"training": {...}, "evals": {evaluation: metrics}}``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..runs import is_export, read_summary
from ..runs.record import read_report_metrics

CARD_FILE = "README.md"
METRICS_FILE = "metrics.json"
_COUNTS = {"n", "n_skipped", "n_images", "n_texts", "n_train", "n_test", "n_templates", "best_C"}
_LOCKS = {"L": "locked", "U": "trained from its pre-trained weights", "u": "trained from random init"}


def _dataset_name(spec: str | None) -> str | None:
    """A short name for a data spec: flickr8k:DIR:split -> flickr8k, data/pairs.csv -> pairs."""
    if not spec:
        return None
    if ":" in spec and not spec.startswith(("/", ".")) and "://" not in spec:
        return spec.split(":", 1)[0]
    return Path(spec.rstrip("/")).name.split(".")[0] or spec


def source_facts(lit) -> dict[str, Any]:
    """``{"training", "evals"}`` of the model's source: a run (summary.json, report/metrics.json) or an
    earlier export (its metrics.json); the config fills in what the source does not record."""
    cfg, evals, summary = lit.cfg, {}, {}
    src = Path(lit.source) if lit.source else None
    if src is not None and is_export(src) and (src / METRICS_FILE).is_file():
        earlier = json.loads((src / METRICS_FILE).read_text())
        summary, evals = earlier.get("training", {}), earlier.get("evals", {})
    elif src is not None and src.is_dir():
        summary, evals = read_summary(src), read_report_metrics(src)
    training = {"data": cfg.data.train, "steps": summary.get("steps", summary.get("step")),
                "batch_size": cfg.train.batch_size, "loss": cfg.train.loss, "train_s": summary.get("train_s"),
                "temperature": lit.model.temperature, "source": str(src) if src else None}
    return {"training": training, "evals": evals}


def _scalars(metrics: dict[str, Any]) -> list[tuple[str, float]]:
    return [(k, float(v)) for k, v in metrics.items()
            if isinstance(v, float) and k not in _COUNTS and not k.endswith("_s")]  # no timings


def _towers(lit) -> list[str]:
    m, c = lit.model, lit.cfg.model
    image_head = c.image.head if c.image.head == "none" else f"{c.image.head} (bias {c.image.head_bias})"
    rows = ["| side | tower | setting | pooling / head | width |", "|---|---|---|---|---|",
            f"| image | `{m.image.name}` | {c.image.lock}: {_LOCKS.get(c.image.lock, c.image.lock)} | head: "
            f"{image_head} | {m.image.embed_dim} -> {m.embed_dim} |",
            f"| text | `{m.text.name}` | {c.text.lock}: {_LOCKS.get(c.text.lock, c.text.lock)}"
            + (f", lowest {c.text.locked_blocks} layer groups locked" if c.text.locked_blocks else "")
            + f" | {c.text.pooling} pooling, head: {c.text.head} (bias {c.text.head_bias}) | "
            f"{m.text.embed_dim} -> {m.embed_dim} |"]
    return rows


def _evals_table(evals: dict[str, Any]) -> list[str]:
    rows = [(name, k, v) for name, metrics in evals.items() if isinstance(metrics, dict)
            for k, v in _scalars(metrics)]
    if not rows:
        return ["No evaluation results: the run has no report (`littune eval ... --report DIR` makes one)."]
    return ["| evaluation | metric | value |", "|---|---|---|",
            *[f"| {name} | {k} | {v:.4f} |" for name, k, v in rows]]


def _usage(fmt: str, name: str, open_clip_note: str | None) -> list[str]:
    littune_py = ["```python", "import littune", "", f'lit = littune.load("{name}")',
                  'lit.classify("photo.jpg", ["a dog", "a cat", "a car"])  # {label: probability}, most probable first',
                  "```"]
    open_clip_py = ["```python", "import open_clip, torch", "from PIL import Image", "",
                    f'model, _, preprocess = open_clip.create_model_and_transforms("local-dir:{name}")',
                    f'tokenizer = open_clip.get_tokenizer("local-dir:{name}")',
                    'image = preprocess(Image.open("photo.jpg").convert("RGB")).unsqueeze(0)',
                    'text = tokenizer(["a dog", "a cat", "a car"])', "with torch.no_grad():",
                    "    img = model.encode_image(image, normalize=True)",
                    "    txt = model.encode_text(text, normalize=True)",
                    "probs = (model.logit_scale.exp() * img @ txt.T).softmax(dim=-1)", "```"]
    if fmt == "open_clip":
        return ["With open_clip (`pip install open-clip-torch`, offline: the text model's config and "
                "tokenizer are in this folder):", "", *open_clip_py, "",
                "With littune, on the same folders as any littune model:", "", "```bash",
                f"littune eval zeroshot --model local-dir:{name} --images photos/ --templates simple",
                f"littune eval retrieval --model local-dir:{name} --data pairs.csv", "```", "",
                "With CLIP_benchmark:", "", "```bash",
                f"clip_benchmark eval --model_type open_clip --model local-dir:{name} --pretrained littune "
                "--dataset cifar10 --dataset_root 'datasets/{dataset}' --task zeroshot_classification --no_amp", "```"]
    lines = ["With littune (`pip install littune`):", "", *littune_py, "",
             "`littune eval zeroshot|retrieval|probe --model THIS_FOLDER ...` evaluates it from the shell."]
    if open_clip_note:
        lines += ["", f"open_clip: {open_clip_note}"]
    return lines


def render_card(lit, fmt: str, facts: dict[str, Any], fingerprints: dict[str, dict[str, str]], *,
                license: str = "other", name: str = "THIS_FOLDER", open_clip_note: str | None = None) -> str:
    """The card's text. ``fingerprints``: {what they identify: {group: fingerprint}}."""
    t = facts["training"]
    dataset = _dataset_name(t["data"])
    tags = ["lit", "zero-shot-image-classification", "image-text", "contrastive-learning", "littune"]
    meta = {"library_name": "open_clip" if fmt == "open_clip" else "littune",
            "license": license, "tags": tags + (["open_clip"] if fmt == "open_clip" else []),
            "pipeline_tag": "zero-shot-image-classification"}
    if dataset:
        meta["datasets"] = [dataset]
    c = lit.cfg.model
    steps = t["steps"] if t["steps"] is not None else "unknown (the run has no summary.json)"
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# LiT: {lit.model.image.name} ({c.image.lock}) + {lit.model.text.name} ({c.text.lock})", "",
             "A two-tower image-text model trained with littune by LiT (Locked-image Text tuning, Zhai et al. "
             "2022, [arXiv 2111.07991](https://arxiv.org/abs/2111.07991)): the pre-trained image tower is "
             f"{'locked' if c.image.lock == 'L' else 'not locked (' + c.image.lock + ')'} and the text tower "
             "learns to read out its embeddings, so images and texts share one "
             f"{lit.model.embed_dim}-d space: zero-shot classification by prompts, image-text retrieval.", "",
             "## Towers", "", *_towers(lit), "",
             "## Training", "",
             f"- data: `{t['data']}`",
             f"- steps: {steps}, batch size {t['batch_size']}, {t['loss']} loss"
             + (f", {t['train_s']:.0f} s of training" if isinstance(t.get("train_s"), (int, float)) else ""),
             f"- learned temperature (exp of logit_scale): {t['temperature']:.3f}",
             f"- source: `{t['source']}`" if t.get("source") else "- source: a model built in Python", "",
             "## Evaluation", "", "From the run's report (`report/metrics.json`; all of it in `metrics.json`).", "",
             *_evals_table(facts["evals"]), "",
             "## Weight fingerprints", "",
             "SHA-256 over each weight group's tensors (names, dtypes, shapes, bytes), 16 hex digits; "
             "littune checks them when it loads this folder.", ""]
    for what, fps in fingerprints.items():
        lines += [f"{what}:", "", "| group | fingerprint |", "|---|---|",
                  *[f"| {g} | `{fp}` |" for g, fp in fps.items()], ""]
    trained = f"{dataset or 'its data'} only" + (f", for {t['steps']} steps" if t["steps"] is not None else "")
    lines += ["## How to use it", "", *_usage(fmt, name, open_clip_note), "",
              "## Limitations", "",
              f"- Trained on {trained}: what it knows of images and words beyond the pre-trained towers is that "
              "data's; measure it on yours (`littune eval`) before relying on it.",
              "- Images are preprocessed as the image tower expects (the exported preprocessing reproduces it); "
              "other resizing changes the embeddings."]
    if fmt == "open_clip":
        lines.append("- open_clip finds the text model's config and tokenizer through the absolute path in "
                     "`text_cfg.hf_model_name`: after moving the folder, pass `text_cfg={**text_cfg, "
                     "'hf_model_name': NEW, 'hf_tokenizer_name': NEW}` to `create_model_and_transforms` "
                     "(`littune eval` finds them by itself).")
        lines.append("- open_clip's tokenizer cleans texts first (ftfy, HTML entities, whitespace): a text "
                     "with HTML entities or mis-encoded characters may tokenize differently than in littune.")
    return "\n".join(lines) + "\n"


def write_card(folder: Path, lit, fmt: str, fingerprints: dict[str, dict[str, str]], *, license: str = "other",
               name: str = "THIS_FOLDER", open_clip_note: str | None = None) -> None:
    """Write README.md and metrics.json into ``folder``."""
    facts = source_facts(lit)
    (Path(folder) / CARD_FILE).write_text(render_card(lit, fmt, facts, fingerprints, license=license, name=name,
                                                      open_clip_note=open_clip_note))
    (Path(folder) / METRICS_FILE).write_text(json.dumps(facts, indent=2, default=str) + "\n")

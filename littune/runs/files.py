"""The names of everything a run folder or an export folder holds: one place to look them up.

    RUN/config.yaml            the resolved experiment config (what ran)
    RUN/model.safetensors      trained weights (a locked tower's are left out: its fingerprint is kept)
    RUN/model_info.json        fingerprints, what was not saved, embedding size, parameter counts
    RUN/summary.json           steps, training time, final metrics
    RUN/metrics.jsonl          one JSON object per logged step (training and evaluations)
    RUN/cache_manifest.json    the training cache's manifest (the data the run saw)
    RUN/checkpoints/step_N/    model.safetensors, model_info.json, state.pt (optimiser, scheduler, RNGs,
                               step), config.yaml + cache_manifest.json as they were (what --resume checks)
    RUN/resumes.json           each resume: the step, the checkpoint, the settings changed
    RUN/tokenizer/             a scratch text tower's own vocabulary
    RUN/report/                report.md, metrics.json and plots
    EXPORT/export.json         marks an export folder (see runs/export.py)
"""
from __future__ import annotations

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.safetensors"
INFO_FILE = "model_info.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
CACHE_MANIFEST_FILE = "cache_manifest.json"
TEXT_CACHE_MANIFEST_FILE = "text_cache_manifest.json"
PREFIX_CACHE_MANIFEST_FILE = "prefix_cache_manifest.json"
STATE_FILE = "state.pt"
CHECKPOINTS_DIR = "checkpoints"
TOKENIZER_DIR = "tokenizer"
REPORT_DIR = "report"
BAD_INPUTS_FILE = "bad_inputs.tsv"
EXPORT_FILE = "export.json"
RESUMES_FILE = "resumes.json"

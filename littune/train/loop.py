"""LiT training: the text tower learns to read out a locked image tower.

``train(cfg)`` builds the model, prepares batches (cached embeddings by default; live images for
the unlocked settings or when ``data.use_cache=false``), and runs AdamW with warmup + cosine,
gradient clipping and optional bfloat16 autocast. It writes everything a later command needs
into the run directory and resumes exactly from its last checkpoint (``resume=True``).
"""
from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed
from ..losses import create_loss
from ..model import LiTModel
from .batches import PairSchedule
from ..towers import ImageTower
from ..towers.tuning import interpolate
from ..runs.files import PREFIX_CACHE_MANIFEST_FILE, TEXT_CACHE_MANIFEST_FILE
from ..runs import (keep_cache_manifest, latest_checkpoint, load_checkpoint, save_checkpoint, save_model,
                    write_config, write_summary)
from ..runs.checkpoints import read_state, rng_state
from ..runs.target import check_run_folder
from ..config import ConfigError, ExperimentConfig, to_yaml, validate
from .data import (CachedBatches, LiveBatches, caption_counts, live_items, open_cache, open_prefix_cache,
                   open_text_cache, schedule_options)
from .anchors import build_anchors
from .warm_start import warm_start
from ..evaluate.suite import DEV, EvalSuite
from ..evaluate.summary import build_report
from .metrics_log import MetricsLog
from .optim import base_lr, build_optimizer, build_scheduler, freeze_zero_lr
from .resume import check_resume
from .step import StepForward, grad_cache_step, mixup_draw, plain_step


class NonFiniteLoss(FloatingPointError):
    pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _prepare_tokenizer(cfg: ExperimentConfig, run_dir: Path, captions: list[list[str]]):
    """The scratch tower's tokenizer: trained on the training captions once, kept in the run."""
    t = cfg.model.text
    if t.name != "scratch":
        return None
    folder = run_dir / "tokenizer"
    if (folder / "tokenizer.json").is_file():
        return str(folder)
    if t.tokenizer != "train":
        return None
    from ..towers.text_scratch import train_tokenizer

    tok = train_tokenizer((c for caps in captions for c in caps), vocab_size=t.vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return str(folder)


def _elastic_resume(run_dir: Path) -> bool:
    """Whether torchrun restarted this job (``--max-restarts``) after one of its processes failed, and
    the run folder's last checkpoint was written by this same job (its rendezvous id): then the job
    continues from it, as ``--resume`` would. Never another job's checkpoint: that one is refused."""
    count, job = distributed.elastic_restart()
    last = latest_checkpoint(run_dir) if count and job else None
    return last is not None and read_state(last).get("elastic_job") == job


class Trainer:
    def __init__(self, cfg: ExperimentConfig, resume: bool = False, image_tower: ImageTower | None = None):
        """``image_tower``: the one ``cfg.model.image`` builds, already built by the caller (the demo
        embeds its images with it first): used as it is instead of being built a second time."""
        started = time.perf_counter()
        validate(cfg)
        self.cfg = cfg
        t = cfg.train
        if t.ring_loss and distributed.world_size() < 2:
            raise ConfigError("train.ring_loss=true passes text chunks between processes, and this run has one "
                              "process: launch it with torchrun --nproc_per_node N (N >= 2), or drop train.ring_loss")
        if t.threads:
            torch.set_num_threads(t.threads)
        self.run_dir = Path(t.out_dir)
        self.restarted = not resume and _elastic_resume(self.run_dir)  # torchrun started us again after a failure
        resume = resume or self.restarted
        if not resume:  # never over a model, an export, another run's config or the user's files
            check_run_folder(self.run_dir, to_yaml(cfg))
        resumed = check_resume(self.run_dir, cfg) if resume else None  # refuses settings that change training
        self.run_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(t.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)

        self.device = distributed.resolve_device(t.device)
        self.precision = distributed.resolve_precision(t.precision, self.device)
        if image_tower is not None and image_tower.name != cfg.model.image.tower_name():
            raise ValueError(f"model.image builds {cfg.model.image.tower_name()!r} but the tower given is {image_tower.name!r}")
        image_tower = (image_tower or cfg.model.image.build()).to(self.device)  # the cache is embedded on the device too
        self.cached = image_tower.locked and cfg.data.use_cache
        self.streamed = cfg.data.stream  # WebDataset shards streamed, never listed or loaded (train/stream.py)
        if self.streamed:
            from .stream import check_stream, stream_captions

            check_stream(cfg, self.cached)
            captions = stream_captions(cfg.data)  # lazy: read only to train a scratch tokenizer
        elif self.cached:
            cache = open_cache(cfg.data, image_tower, "train", progress=t.progress)
            captions = cache.captions
            if resumed:
                resumed.check_data(cache.folder)  # the data the checkpoint was trained on, or a refusal
            keep_cache_manifest(self.run_dir, cache.folder)
        else:
            items = live_items(cfg.data)
            captions = [it.captions for it in items]
        tokenizer = _prepare_tokenizer(cfg, self.run_dir, captions)
        if tokenizer is not None:
            cfg.model.text.tokenizer = "tokenizer"  # relative to the run directory (see runs.load_run)
        seed_everything(t.seed)  # embedding a missing cache above draws random numbers: same init either way
        self.model: LiTModel = cfg.model.build(image_tower, tokenizer=tokenizer).to(self.device)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.main = self.rank == 0
        # Both towers locked and the images cached: the text tower's features are cached too.
        self.text_cached = self.cached and self.model.text.locked and cfg.data.use_text_cache
        text_cache = None
        if self.text_cached:
            with torch.random.fork_rng(devices=[]):  # embedding must not move the training's RNG
                text_cache = open_text_cache(cfg.data, self.model.text, cache, progress=t.progress)
            keep_cache_manifest(self.run_dir, text_cache.folder, TEXT_CACHE_MANIFEST_FILE)
        self.anchors = None
        if t.anchors.weight:  # the image tower's own classes, aimed at its classifier (train/anchors.py); what
            # they need of the config (locked, cached towers, no stream) was checked by validate()
            with torch.random.fork_rng(devices=[]):
                self.anchors = build_anchors(cfg, self.model, cfg.data.cache_root, self.device,
                                             progress=t.progress and self.main)
        prefix_cache = None
        if cfg.model.text.prefix_cache.k:  # the locked bottom of the text tower, run once per caption
            with torch.random.fork_rng(devices=[]):
                prefix_cache = open_prefix_cache(cfg.model.text.prefix_cache, self.model.text, cache,
                                                 progress=t.progress and self.main)
            keep_cache_manifest(self.run_dir, prefix_cache.folder, PREFIX_CACHE_MANIFEST_FILE)
        self.warm_started = (warm_start(self.model, t.init_from, list(t.init_parts))
                             if t.init_from and not resume else None)
        transform = (image_tower.preprocess.train_transform() if cfg.data.augment
                     else image_tower.preprocess.transform())  # live and streamed images
        if self.streamed:  # the stream is its own schedule: its position is the step
            from .stream import StreamingBatches

            self.schedule = self.batches = StreamingBatches.from_config(cfg, transform, self.rank, self.world)
        else:
            self.schedule = PairSchedule(caption_counts(captions), t.batch_size, t.seed,
                                         cfg.data.views if self.cached else 0, rank=self.rank, world=self.world,
                                         **schedule_options(cache if self.cached else None, cfg.data))
            self.batches = (CachedBatches(cache, self.schedule, text_cache, prefix_cache) if self.cached
                            else LiveBatches(items, self.schedule, transform, cfg.data.num_workers))
        if self.rank:  # its own noise (dropout, augmentation) from here on; rank 0 draws as one process does
            seed_everything(distributed.rank_seed(t.seed, self.rank))
        self.loss_fn = create_loss(t.loss, local_loss=t.local_loss, ring=t.ring_loss)
        # A parameter the loss never uses would stall DDP's gradient buckets: the softmax loss has no bias.
        self.model.logit_bias.requires_grad_(self.loss_fn.uses_bias)
        for key, names in freeze_zero_lr(self.model, cfg).items():  # before DDP: it lists what trains
            if self.main:
                print(f"{key}=0: {len(names)} parameter(s) frozen, not trained ({', '.join(names[:3])}"
                      f"{', ...' if len(names) > 3 else ''})", file=sys.stderr, flush=True)
        # One module for the trainable forward; under torchrun DDP averages its gradients.
        self.forward = StepForward(self.model)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.forward, device_ids=ids, broadcast_buffers=False)
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.step = 0
        self.train_s = 0.0  # wall time spent in training steps (data included), summed over resumes
        self.setup_s = time.perf_counter() - started  # towers, caches (embedding what is missing), optimiser
        if resumed:
            state = load_checkpoint(resumed.checkpoint, self.model, self.optimizer, self.scheduler, self.rank,
                                    self.world)  # this process's own random state
            self.step = int(state["step"])
            self.train_s = float(state.get("train_s", 0.0))
            if self.main:  # say what happened: the run continues, it does not start over
                again = f"torchrun restart {distributed.elastic_restart()[0]}: " if self.restarted else ""
                print(f"{again}resuming from step {self.step} of {t.steps} ({resumed.checkpoint})", file=sys.stderr,
                      flush=True)
        # Every process checks the evaluations' options (a typo fails before training); rank 0 runs them.
        suite = EvalSuite.from_config(cfg, progress=t.progress)
        self.suite = suite if self.main and len(suite) else None
        if self.main:
            write_config(self.run_dir, cfg)
            if resumed:
                resumed.record(self.run_dir, self.step)  # resumes.json: from which step, which keys changed
        self.log = MetricsLog(self.run_dir, resume_step=self.step) if self.main else None
        self.n_bad = 0
        self._training: list[torch.nn.Module] | None = None  # the modules model.train() left training

    # ------------------------------------------------------------------------------------------
    def train_step(self, batch: dict) -> dict:
        t = self.cfg.train
        self._training_mode()
        dev = self.device
        if batch.get("text_features") is not None:  # a locked, cached text tower: it never runs
            text_kw = {"text_features": batch["text_features"].to(dev, non_blocking=True)}
        elif batch.get("text_tokens") is not None:  # a prefix cache's states: the unlocked layers run
            text_kw = {"tokens": {k: v.to(dev, non_blocking=True) for k, v in batch["text_tokens"].items()}}
        else:
            text_kw = {"tokens": {k: v.to(dev, non_blocking=True)
                                  for k, v in self.model.tokenize(batch["captions"]).items()}}
        if batch.get("pixels") is None and batch.get("image_features") is None:
            raise ValueError(f"step {self.step}: every image of process {self.rank}'s batch failed to decode "
                             f"({len(batch.get('bad', []))} bad inputs, see bad_inputs in metrics.jsonl)")
        image_kw = ({"pixels": batch["pixels"].to(dev, non_blocking=True)} if batch.get("pixels") is not None
                    else {"image_features": batch["image_features"].to(dev, non_blocking=True)})
        bf16 = self.precision == "bf16"
        self.optimizer.zero_grad(set_to_none=True)
        try:
            if t.grad_cache_chunk and "tokens" in text_kw:  # (cached text: no activations to save, same gradients)
                loss = grad_cache_step(self.forward, self.loss_fn, text_kw["tokens"], image_kw, t.grad_cache_chunk, bf16)
            else:
                mix = mixup_draw(t.mixup, len(batch["captions"]), t.seed, self.step, self.rank, dev) if t.mixup else None
                anchors = (self.anchors, *self.anchors.draw(self.step, self.rank)) if self.anchors else None
                loss = plain_step(self.forward, self.loss_fn, text_kw, image_kw, bf16, mix, anchors)
        except FloatingPointError as e:
            self._non_finite(str(e))
        if self.world > 1:  # with local_loss each process holds a part: log the global loss
            loss = distributed.mean_across(loss)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        gnorm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip if self.cfg.optim.grad_clip > 0 else float("inf"))
        if not torch.isfinite(gnorm):
            self._non_finite(f"gradient norm became {gnorm.item()}")
        lr = base_lr(self.optimizer)
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss.item(), "grad_norm": gnorm.item(), "lr": lr}  # the base lr this step used

    def _training_mode(self) -> None:
        """``model.train()`` when a module that trains has left training mode (an evaluation's ``eval()``).
        Setting every module's mode at every step walks the locked towers too (Lite0 + Lite2 + MPNet:
        thousands of modules, ~25 ms a step on 2 cores); checking the modules that train is cheap."""
        if self._training is None or not all(m.training for m in self._training):
            self.model.train()
            self._training = [m for m in self.model.modules() if m.training]  # a locked tower stays in eval

    def _non_finite(self, what: str) -> None:
        last = latest_checkpoint(self.run_dir)
        raise NonFiniteLoss(f"{what} at step {self.step}; stopped without writing a checkpoint. "
                            f"Last good checkpoint: {last or 'none'} (resume with --resume, "
                            "perhaps with a lower optim.lr)")

    def checkpoint(self) -> Path | None:
        """Called on every process: each one's random state goes to rank 0, which writes the checkpoint
        once (every process holds the same weights)."""
        rngs = distributed.gather_objects(rng_state()) if self.world > 1 else None
        if not self.main:
            return None
        return save_checkpoint(self.run_dir, self.step, self.model, self.optimizer, self.scheduler,
                               {"data_position": self.schedule.position(self.step), "train_s": self.train_s,
                                "elastic_job": distributed.elastic_restart()[1]},
                               keep=self.cfg.train.keep_checkpoints, rng_ranks=rngs)

    def fit(self) -> dict:
        t = self.cfg.train
        trainable = self.model.parameter_counts()["trainable"]
        bar = tqdm(total=t.steps, initial=self.step, desc=f"train ({trainable / 1e6:.2f}M trainable)", unit="step",
                   disable=not (t.progress and self.main), dynamic_ncols=True)
        window_t, window_n = time.perf_counter(), 0
        last = time.perf_counter()
        for batch in self.batches.iterate(self.step, t.steps):
            bad = batch.get("bad") or []
            if self.world > 1 and not self.cached:  # every process's bad inputs reach the log rank 0 writes
                bad = [row for rows in (distributed.gather_objects(bad) or []) for row in rows]
            if bad and self.main:
                self.log.bad_inputs(bad)
                self.n_bad += len(bad)
            stats = self.train_step(batch)
            self.step += 1
            now = time.perf_counter()
            self.train_s, last = self.train_s + (now - last), now
            window_n += len(batch["captions"]) * self.world
            bar.update(1)
            if self.main and (self.step % t.log_every == 0 or self.step == t.steps):
                dt = time.perf_counter() - window_t
                row = {"step": self.step, **stats, "train_s": round(self.train_s, 3), "temperature": self.model.temperature,
                       "bias": float(self.model.logit_bias.detach()),
                       "examples_per_s": window_n / dt if dt > 0 else math.nan}
                self.log.write(row)
                bar.set_postfix(loss=f"{stats['loss']:.3f}", T=f"{row['temperature']:.1f}",
                                ex_s=f"{row['examples_per_s']:.0f}")
                window_t, window_n = time.perf_counter(), 0
            if self.suite and self.step < t.steps and (due := self.suite.due(self.step)):
                self.log.write({"step": self.step, "train_s": round(self.train_s, 3),
                                **self.suite.scalars(self.suite.run(self.model, due))})
            if t.ckpt_every and self.step % t.ckpt_every == 0 and self.step < t.steps:
                self.checkpoint()
            last = time.perf_counter()  # evaluation and checkpoints are not training time
        bar.close()
        return self.finish()

    def finish(self) -> dict:
        t = self.cfg.train
        summary = {"step": self.step, "train_s": round(self.train_s, 2), "setup_s": round(self.setup_s, 2),
                   "temperature": self.model.temperature,
                   "fingerprints": self.model.fingerprints(), "bad_inputs": self.n_bad, "world_size": self.world}
        results = {}
        self.checkpoint()  # every process (random states); before the evaluations, so no process waits on them
        if self.main:
            if t.interpolate_alpha is not None:  # the checkpoint keeps the trained weights: a resume or
                # `littune interpolate` starts from them
                interpolate(self.model.text, t.interpolate_alpha, self.cfg.model.text.build)
                summary.update(interpolate_alpha=t.interpolate_alpha, fingerprints=self.model.fingerprints())
            if self.suite:
                results = self.suite.run(self.model)
                scalars = self.suite.scalars(results)
                self.log.write({"step": self.step, "train_s": round(self.train_s, 3), **scalars})
                summary["evals"] = {name: {k.split("/", 1)[1]: v for k, v in scalars.items() if k.startswith(name + "/")}
                                    for name in results}
                if DEV in results:
                    summary["dev"] = summary["evals"][DEV]
            save_model(self.model, self.run_dir)
            write_summary(self.run_dir, summary)
            self.log.close()
            build_report(self.run_dir / "report", f"training run {self.cfg.name}",
                         {("dev retrieval" if n == DEV else n): m for n, m in results.items()}, run_dir=self.run_dir)
        distributed.barrier()
        return summary


def train(cfg: ExperimentConfig, resume: bool = False, image_tower: ImageTower | None = None) -> dict:
    return Trainer(cfg, resume=resume, image_tower=image_tower).fit()

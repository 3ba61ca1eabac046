"""What the root entry points (train.py, eval.py, sample.py, pretokenize.py) call after Hydra composed a config.

Asking for a stage that does not exist is a one-line error naming it. ``ConfigError``s (missing data root, weights,
mismatched sizes) end the program with one ``error: ...`` line and exit code 2, never a traceback from deep inside a
library.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fsq_repro.errors import ConfigError, first_line, peer_failure
from fsq_repro.hardware import default_device, launch_rank
from fsq_repro.pipeline.options import check_options

KNOWN_STAGES = (
    "data",
    "stage1",
    "tokenize",
    "stage2",
    "eval",
    "uvim_stage1",
    "uvim_tokenize",
    "uvim_stage2",
    "uvim_eval",
)


# Third-party notices that say nothing about a run (pinned versions; the eval-mode modules are the tokenizer's
# EMA copy and frozen feature nets, on purpose). Silenced so that real warnings stand out.
KNOWN_NOISE = (
    r"'set_vital' is deprecated",  # torchdata 0.11 StatefulDataLoader
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # lightning 2.6 with torch 2.9
    r"Found \d+ module\(s\) in eval mode at the start of training",  # lightning: EMA / frozen nets
    # lightning turns ckpt_path=None into "last" when OnExceptionCheckpoint is present; our `resume_path` has
    # already chosen the newest last/interrupted checkpoint, so on a fresh run there is none by design
    r"`\.fit\(ckpt_path=None\)` was called without a model\. The last model",  # (filters match at the start)
    r'\.fit\(ckpt_path="last"\) is set, but there is no last checkpoint available',
    r"Precision bf16-mixed is not supported by the model summary",
    # lightning 2.6: a 15-line example of saving pre-step weights, whenever ModelCheckpoint(every_n_train_steps)
    # meets manual optimisation (Stage I); our checkpoints hold the post-step state by design (exact resume)
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
)


def quiet_known_noise() -> None:
    import warnings

    for message in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message)


def one_line_errors(fn: Callable) -> Callable:
    """Every entry point's wrapper: silence ``KNOWN_NOISE``, and turn a ``ConfigError`` (also when wrapped by
    Hydra's instantiate) into ``error: ...`` and exit code 2, and a collective that failed because another DDP
    process died (``errors.peer_failure``) or a full disk / quota (whose message names the file, ``atomic.py``)
    into one ``error:`` line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        quiet_known_noise()
        try:
            return fn(*args, **kwargs)
        except (ConfigError, InstantiationException) as err:
            cause = err
            while not isinstance(cause, ConfigError) and cause.__cause__ is not None:
                cause = cause.__cause__
            if not isinstance(cause, ConfigError):
                raise
            print(f"error: {cause}", file=sys.stderr)
            raise SystemExit(2) from None
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            where = f"{err.filename}: " if err.filename else ""  # atomic.py's writers name the file in the message
            print(f"error: {where}{err.strerror or err}", file=sys.stderr)
            raise SystemExit(1) from None
        except Exception as err:
            if not peer_failure(err):
                raise
            import os

            rank = os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or "0"
            first = first_line(err, 160)
            print(f"error: rank {rank}: another process of this DDP job died or stopped answering ({first}); "
                  "resume with the same command (it restarts from the last checkpoint)", file=sys.stderr)  # fmt: skip
            raise SystemExit(1) from None

    return wrapper


def _output_dir(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def stage_data(cfg: DictConfig) -> dict:
    """Build the data module, read one batch of each split, save a sample grid: a check of ``data=...``."""
    from fsq_repro.viz import save_image_grid

    dm = instantiate(cfg.data)
    dm.setup("fit")
    train_batch = next(iter(dm.train_dataloader()))
    val_batch = next(iter(dm.val_dataloader()))
    grid = save_image_grid(train_batch["image"][:64], _output_dir(cfg) / "data_samples.png", nrow=8)
    info = {
        "data": dm.name,
        "num_classes": dm.num_classes,
        "train_size": len(dm.train_set) if hasattr(dm.train_set, "__len__") else None,
        "val_size": len(dm.val_set) if hasattr(dm.val_set, "__len__") else None,
        "batch": tuple(train_batch["image"].shape),
        "pixel_range": (round(float(train_batch["image"].min()), 3), round(float(train_batch["image"].max()), 3)),
        "corrupt_in_first_batches": int(train_batch["num_corrupt"]) + int(val_batch["num_corrupt"]),
        "grid": str(grid),
    }
    for key, value in info.items():
        print(f"  {key}: {value}")
    return info


def stage_stage1(cfg: DictConfig) -> dict:
    from fsq_repro.pipeline.stage1 import stage_stage1 as run

    return run(cfg)


def stage_tokenize(cfg: DictConfig) -> dict:
    from fsq_repro.pipeline.stage2 import stage_tokenize as run

    return run(cfg)


def stage_stage2(cfg: DictConfig) -> dict:
    from fsq_repro.pipeline.stage2 import stage_stage2 as run

    return run(cfg)


def stage_eval(cfg: DictConfig) -> dict:
    from fsq_repro.pipeline.evaluate import stage_eval as run
    from fsq_repro.pipeline.stages import log_results

    out = _output_dir(cfg)
    results = run(cfg, out)
    log_results(cfg, "eval", results, {name: out / f"{name}.png" for name in ("cfg_sweep", "usage_histogram")})
    return results


def _uvim(name: str) -> Callable[[DictConfig], object]:
    """UViM's stages (FSQ paper §4.4), imported when run: ``fsq_repro/pipeline/uvim.py``."""

    def run(cfg: DictConfig) -> object:
        from fsq_repro.pipeline import uvim

        return getattr(uvim, f"stage_{name}")(cfg)

    return run


STAGES: dict[str, Callable[[DictConfig], object]] = {
    "data": stage_data,
    "stage1": stage_stage1,
    "tokenize": stage_tokenize,
    "stage2": stage_stage2,
    "eval": stage_eval,
    **{name: _uvim(name) for name in ("uvim_stage1", "uvim_tokenize", "uvim_stage2", "uvim_eval")},
}


def _summary(cfg: DictConfig) -> str:
    quantizer = instantiate(cfg.quantizer)  # validates the bottleneck config at startup
    return (
        f"experiment={cfg.experiment_name} data={cfg.data.get('name')} "
        f"quantizer={quantizer.__class__.__name__}({quantizer.extra_repr()})"
    )


def _check_accelerator(cfg: DictConfig) -> None:
    """``trainer=gpu`` / ``ddp`` on a machine where torch sees no CUDA GPU: one line naming ``trainer=cpu``, before
    any data is loaded (Lightning would raise ``No supported gpu backend found!`` only at the first fit)."""
    accelerator = str((cfg.get("trainer") or {}).get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accelerator} but torch sees no CUDA GPU on this machine: pass "
                              "trainer=cpu (or run where a GPU is visible)")  # fmt: skip


def _launch_leader() -> bool:
    """True in the process that a multi-process launch (torchrun, Lightning DDP's re-launched ranks, SLURM tasks)
    counts as its first; always in a single process."""
    import os

    return all(int(os.environ.get(k, 0) or 0) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


@contextlib.contextmanager
def run_dir_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``<run dir>/.lock`` while a ``train.py`` works in it, so a second ``train.py`` on the
    same run dir is refused in one line instead of racing on its checkpoints and artifacts. The kernel drops the
    lock when the holder exits or is killed, so a crashed run never leaves a stale lock. Only the launch's first
    process takes it (the other DDP ranks work in the same dir by design)."""
    if not _launch_leader():
        yield
        return
    import fcntl
    import os

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(f"run dir {folder} is in use by {holder}: wait for it to finish or pass another "
                              "hydra.run.dir") from None  # fmt: skip
        handle.seek(0)
        handle.truncate()
        handle.write(f"train.py (pid {os.getpid()})\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@one_line_errors
def run_train(cfg: DictConfig) -> None:
    check_options(cfg, train=True)
    print(_summary(cfg))
    unknown = [s for s in cfg.stages if s not in KNOWN_STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown} in `stages`; known: {list(KNOWN_STAGES)}")
    from fsq_repro.pipeline.evaluate import PIPELINE_TASKS as pipeline_tasks

    bad_tasks = [t for t in cfg.get("eval_tasks") or [] if t not in pipeline_tasks]
    if "eval" in cfg.stages and bad_tasks:  # checked before hours of training, not after
        raise ConfigError(f"unknown eval_tasks {bad_tasks}; known: {list(pipeline_tasks)}")
    featureless = [t for t in cfg.get("eval_tasks") or [] if t not in ("reconstruction", "compression")]
    if "eval" in cfg.stages and cfg.metrics.get("extractor") == "none" and featureless:
        raise ConfigError(f"eval_tasks {featureless} need a feature space: metrics.extractor=inception or shapes")
    _check_accelerator(cfg)
    missing = [s for s in cfg.stages if s not in STAGES]
    if missing:
        raise ConfigError(
            f"stage(s) {missing} are not implemented yet; implemented: {sorted(STAGES)} (e.g. stages=[data])"
        )
    with run_dir_lock(Path(cfg.paths.output_dir)):
        for stage in cfg.stages:
            print(f"[{stage}]")
            STAGES[stage](cfg)
    from fsq_repro.pipeline.stages import finish_wandb_run

    finish_wandb_run()  # the next job of a multirun must start its own W&B run


@one_line_errors
def run_eval(cfg: DictConfig) -> None:
    from fsq_repro.pipeline.evaluate import run_task
    from fsq_repro.pipeline.stages import log_results

    check_options(cfg)
    out = Path(cfg.get("out") or _output_dir(cfg))
    results = run_task(cfg, out)
    plots = {name: out / f"{name}.png" for name in ("cfg_sweep", "usage_histogram", "semantics")}
    log_results(cfg, f"eval_{cfg.task}", results, plots)


def maybe_init_distributed() -> tuple[int, int]:
    """Join the process group of a ``torchrun`` launch (nccl on GPU, gloo on CPU); ``(rank, world_size)``."""
    import os

    import torch
    import torch.distributed as dist

    _, world = launch_rank()
    if world > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


@one_line_errors
def run_sample(cfg: DictConfig) -> None:
    """``sample.py``: class-conditional MaskGIT samples → ``samples.npz`` (ADM format) + a PNG grid."""
    import torch
    import torch.distributed as dist

    from fsq_repro.artifacts import load_maskgit, load_tokenizer
    from fsq_repro.data.token_cache import file_hash
    from fsq_repro.generation.sampler import sample_with_model
    from fsq_repro.generation.sampling_job import gather_shards, generate_shard, labels_for, write_npz
    from fsq_repro.pipeline.stages import artifact_path
    from fsq_repro.viz import save_image_grid

    for key in ("num_per_class", "batch_size"):
        if not isinstance(cfg.get(key), int) or cfg[key] < 1:
            raise ConfigError(f"{key}={cfg.get(key)} must be a positive integer")
    check_options(cfg)
    rank, world = maybe_init_distributed()
    device = default_device()
    tok_path = artifact_path(cfg, "tokenizer", "tokenizer.pt")
    tokenizer = load_tokenizer(tok_path, device=device)
    model = load_maskgit(artifact_path(cfg, "maskgit", "maskgit.pt"), tokenizer_hash=file_hash(tok_path), device=device)
    if cfg.get("classes") and max(cfg.classes) >= model.num_classes:
        raise ConfigError(f"classes={list(cfg.classes)}: the model has classes 0..{model.num_classes - 1}")
    sampler = OmegaConf.to_container(cfg.sampler, resolve=True)
    if cfg.get("cfg_scale") is not None:
        sampler["cfg_scale"] = float(cfg.cfg_scale)
    labels = labels_for(model.num_classes, int(cfg.num_per_class), cfg.get("classes"))
    h, w = tokenizer.token_grid

    def sample_fn(batch_labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        tokens = sample_with_model(model, batch_labels, generator=generator, **sampler)
        return tokenizer.decode(tokens.view(-1, h, w))

    out = Path(cfg.get("out") or _output_dir(cfg))
    print(f"sampling {len(labels)} images ({cfg.num_per_class} per class, cfg_scale={sampler['cfg_scale']}) on {world}")
    shard = generate_shard(sample_fn, labels, int(cfg.batch_size), int(cfg.seed), rank, world, device)
    merged = gather_shards(out, rank, world, shard, len(labels), dist.barrier if world > 1 else lambda: None)
    if merged is not None:
        images, got = merged
        path = write_npz(out / "samples.npz", images, got)
        per, cols = int(cfg.num_per_class), min(8, int(cfg.num_per_class))
        k = len(images) // per  # class-interleaved: the j-th sample of class c is number j·K + c
        pick = [j * k + c for c in range(min(16, k)) for j in range(cols)]  # a row per class
        shown = torch.from_numpy(images[pick]).permute(0, 3, 1, 2).float() / 127.5 - 1
        grid = save_image_grid(shown, out / "samples.png", nrow=cols, upscale=2 if images.shape[1] < 128 else 1)
        print(f"wrote {path} ({images.shape[0]} images {tuple(images.shape[1:])}) and {grid}")


@one_line_errors
def run_pretokenize(cfg: DictConfig) -> None:
    """``pretokenize.py tokenizer=... data=...``: the Stage II token cache (multi-GPU with torchrun)."""
    from fsq_repro.pipeline.stage2 import tokenize

    check_options(cfg)
    rank, world = maybe_init_distributed()
    if not cfg.get("tokenizer"):
        raise ConfigError("pass tokenizer=/path/to/tokenizer.pt")
    if world > 1 and not cfg.get("out"):
        raise ConfigError("with several processes pass out=/shared/dir so that every rank writes the same cache")
    out = Path(cfg.get("out") or _output_dir(cfg) / "tokens")
    meta = tokenize(cfg, Path(cfg.tokenizer), out, batch_size=cfg.get("batch_size"))
    if rank == 0:
        counts = {k: v["count"] * v["variants"] for k, v in meta["splits"].items()}
        print(f"token cache {out}: {counts} sequences, grid {meta['token_grid']}, tokenizer {meta['tokenizer_hash']}")

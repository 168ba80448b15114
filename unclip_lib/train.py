"""Training loops: seeds, progress bars, atomic checkpoints, exact resume.

Every training command is `fit(...)` with a model, a batch function and a loss:

- the batch of step s is a pure function of (seed, s) (the world renders it from that
  seed), and so is the loss's own randomness (`torch.Generator` seeded per step), so a
  run killed at any point and restarted continues exactly where its last checkpoint was;
- checkpoints (model, optimiser, step, EMA) are safetensors, written atomically every
  `checkpoint_every` steps and at the end, in `run_dir/checkpoint.safetensors`;
- the loss is logged to `run_dir/log.jsonl` and shown on a tqdm bar.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .checkpoints import CheckpointError, load_checkpoint, load_state_into, save_checkpoint
from .distributed import is_main_process


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    ema: float = 0.0  # EMA decay of the weights (0 disables)
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    device: str = "auto"        # "auto": cuda, else mps, else cpu (distributed.pick_device)
    precision: str = "fp32"     # or "bf16" / "fp16" mixed precision (distributed.autocast)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def step_generator(seed: int, step: int) -> torch.Generator:
    """The RNG of one training step: the same (seed, step), the same draws."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, list]:
    sd = opt.state_dict()
    tensors = {f"optim.{i}.{k}": (v if isinstance(v, torch.Tensor) else torch.tensor(v))
               for i, state in sd["state"].items() for k, v in state.items()}
    return tensors, sd["param_groups"]


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict, groups: list) -> None:
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def fit(model: nn.Module, make_batch: Callable[[int], object],
        loss_fn: Callable[[nn.Module, object, torch.Generator], torch.Tensor],
        cfg: TrainConfig, run_dir: str | Path, kind: str, model_config: dict,
        params: list | None = None, desc: str = "train",
        on_checkpoint: Callable[[int, nn.Module], dict] | None = None) -> tuple[nn.Module, nn.Module | None]:
    """Train `model` for cfg.steps steps, resuming from run_dir if a checkpoint is there.

    make_batch(step) -> batch; loss_fn(model, batch, generator) -> scalar loss.
    on_checkpoint(step, model) may return figures to log (e.g. a validation accuracy).
    Returns (model, ema_model or None).
    """
    from .distributed import LossModule, RankGenerator, Runtime, autocast, rank_slice, to_device

    torch.manual_seed(cfg.seed)
    rt = Runtime.from_env(cfg.device)
    autocast(rt.device, cfg.precision)  # validates the name before any work
    if cfg.batch_size % rt.world:
        raise ValueError(f"batch size {cfg.batch_size} does not split over {rt.world} processes")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.safetensors"
    model.to(rt.device)
    params = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema > 0 else None
    start, seconds_before = 0, 0.0
    if ckpt_path.exists():
        start, seconds_before = _resume(ckpt_path, model, ema, opt, kind, model_config, cfg)
        if rt.is_main:
            print(f"resumed {ckpt_path} at step {start}/{cfg.steps}")
    if rt.world > 1 and rt.max(start) != rt.min(start):
        raise RuntimeError(f"the ranks found different checkpoints in {run_dir} (this rank: step {start}); every "
                           "process must see the same run directory, e.g. on a shared filesystem")
    if rt.is_main:
        (run_dir / "train_config.json").write_text(json.dumps(
            {"train": asdict(cfg), "model": model_config, "kind": kind, "processes": rt.world}, indent=2))
    log = (run_dir / "log.jsonl").open("a") if rt.is_main else None
    # several processes: DDP averages the gradients of the ranks' batch slices (and starts
    # every rank from rank 0's weights)
    step_model = model if rt.world == 1 else torch.nn.parallel.DistributedDataParallel(
        LossModule(model), find_unused_parameters=True)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=cfg.precision == "fp16")
    model.train()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=desc, dynamic_ncols=True,
               disable=not rt.is_main)
    t0, running = time.time(), None
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = to_device(rank_slice(make_batch(step), rt.rank, rt.world), rt.device)
        with autocast(rt.device, cfg.precision):
            if rt.world == 1:
                loss = loss_fn(model, batch, step_generator(cfg.seed, step))
            else:  # draws for the whole batch, this rank's rows: the noise one process would use
                loss = step_model(loss_fn, batch, RankGenerator(step_generator(cfg.seed, step), rt.rank, rt.world))
        value = rt.mean(loss)            # the whole batch's loss, averaged over the ranks
        if not math.isfinite(value):     # every rank sees the same value, so all of them stop
            raise FloatingPointError(f"loss became {value} at step {step}; lower the learning rate")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        if ema is not None:
            # warm-up: early on the average would be dominated by the random initialisation
            _ema_update(ema, model, min(cfg.ema, (1 + step) / (10 + step)))
        running = value if running is None else 0.95 * running + 0.05 * value
        done = step + 1
        if rt.is_main and (done % cfg.log_every == 0 or done == cfg.steps):
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr_at(step, cfg):.2e}")
            log.write(json.dumps({"step": done, "loss": value, "smooth_loss": running,
                                  "seconds": round(time.time() - t0, 2)}) + "\n")
            log.flush()
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            if rt.is_main:
                _save(ckpt_path, model, ema, opt, done, kind, model_config, cfg,
                      seconds_before + time.time() - t0)
                if on_checkpoint is not None:
                    was_training = model.training
                    figures = on_checkpoint(done, ema if ema is not None else model)
                    model.train(was_training)
                    if figures:
                        log.write(json.dumps({"step": done, **figures}) + "\n")
                        log.flush()
                        bar.write(f"step {done}: {figures}")
            rt.barrier()                 # the others wait until the checkpoint is on disk
    if log is not None:
        log.close()
    model.eval()
    return model, ema


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


def _save(path, model, ema, opt, step, kind, model_config, cfg, seconds: float) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    opt_tensors, groups = _optimizer_tensors(opt)
    tensors.update(opt_tensors)
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in groups]
    save_checkpoint(path, tensors, f"run/{kind}", model_config,
                    {"step": step, "param_groups": groups, "train": asdict(cfg),
                     "train_seconds": round(seconds, 1)}, write_json=False)


def _resume(path, model, ema, opt, kind, model_config, cfg) -> int:
    tensors, config, extra = load_checkpoint(path, f"run/{kind}")
    if config != json.loads(json.dumps(model_config)):  # as stored: tuples come back as lists
        raise CheckpointError(f"{path} was written for another model config:\n  file:  {config}\n"
                              f"  asked: {model_config}\nuse a fresh --run-dir or delete the file")
    load_state_into(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(path))
    if ema is not None:
        ema_state = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        load_state_into(ema, ema_state or dict(model.state_dict()), str(path))
    _restore_optimizer(opt, tensors, extra["param_groups"])
    return int(extra["step"]), float(extra.get("train_seconds", 0.0))


def warm_start(module: nn.Module, path: str | Path, kind: str) -> dict:
    """Initialise `module` from the weights of a checkpoint of `kind` (a trained stage that the
    new model extends): every tensor in the file must exist in the module with its shape;
    the module's tensors missing from the file (the new layers) keep their initialisation.
    Returns {"init": path, "init_sha256": ..., "new_tensors": count} for the run's metadata."""
    import hashlib

    from .checkpoints import load_checkpoint

    from .checkpoints import read_metadata

    tensors, _, _ = load_checkpoint(path, kind)
    before = read_metadata(path).get("extra", {})
    own = module.state_dict()
    grown = [k for k in tensors if k in own and _grows_inputs(tensors[k], own[k])]
    foreign = [k for k in tensors if (k not in own or own[k].shape != tensors[k].shape) and k not in grown]
    if foreign:
        raise CheckpointError(f"{path}: cannot warm-start from it: {len(foreign)} tensors do not fit this model "
                              f"(first: {foreign[0]}); it must be a trained stage of the same architecture")
    for k in grown:
        # a layer that now reads more input channels, the new ones appended after the old
        # (an inpainting decoder's mask channels): the old weights read the old channels and
        # the new ones start at zero, so the model starts out as the trained one
        wide = torch.zeros_like(own[k])
        wide[:, :tensors[k].shape[1]] = tensors[k]
        tensors = {**tensors, k: wide}
    module.load_state_dict(tensors, strict=False)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    # what the init's own training cost (and its init's), so the shipped file states the whole bill
    earlier = float(before.get("train_seconds", 0)) + float(before.get("init_train_seconds", 0))
    steps = int(before.get("train", {}).get("steps", 0)) + int(before.get("init_steps", 0))
    return {"init": str(path), "init_sha256": digest, "new_tensors": len(set(own) - set(tensors)),
            "init_train_seconds": round(earlier, 1), "init_steps": steps}


def _grows_inputs(old: torch.Tensor, new: torch.Tensor) -> bool:
    """Is `new` a convolution or linear weight like `old` with more input channels (dim 1)?"""
    return (old.dim() in (2, 4) and old.dim() == new.dim() and new.shape[1] > old.shape[1]
            and old.shape[:1] + old.shape[2:] == new.shape[:1] + new.shape[2:])


def run_seconds(run_dir: str | Path) -> int:
    """Wall-clock seconds a run has trained so far, summed over all its resumed sessions."""
    from .checkpoints import read_metadata

    return round(read_metadata(Path(run_dir) / "checkpoint.safetensors")["extra"].get("train_seconds", 0))


def trained_weights(run_dir: str | Path, kind: str, prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """The (EMA, when present) model weights of a run's checkpoint."""
    tensors, _, _ = load_checkpoint(Path(run_dir) / "checkpoint.safetensors", f"run/{kind}")
    prefix = "ema." if prefer_ema and any(k.startswith("ema.") for k in tensors) else "model."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


# ----------------------------------------------------------------------------- components

class StepBatches(torch.utils.data.IterableDataset):
    """Yields (step, batch) for steps [start, stop); batch = render(step). Run in a
    DataLoader worker so rendering overlaps training."""

    def __init__(self, render: Callable[[int], object], start: int, stop: int):
        self.render, self.start, self.stop = render, start, stop

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield step, self.render(step)


class Prefetcher:
    """make_batch(step) for `fit`, rendering ahead in one background worker."""

    def __init__(self, render: Callable[[int], object], steps: int, workers: int = 1):
        self.render, self.steps, self.workers = render, steps, workers
        self._it, self._next = None, None

    def __call__(self, step: int):
        if self._it is None or step != self._next:
            loader = torch.utils.data.DataLoader(StepBatches(self.render, step, self.steps),
                                                 batch_size=None, num_workers=self.workers,
                                                 worker_init_fn=_one_thread)
            self._it = iter(loader)
        got, batch = next(self._it)
        assert got == step, (got, step)
        self._next = step + 1
        return batch


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)  # the renderer must not compete with training for cores


class ClipBatch:
    """Picklable renderer of CLIP training batches: (images [B,3,R,R], captions), the
    world's `clip_batch` of each step."""

    def __init__(self, seed: int, batch_size: int, resolution: int, world: str = "shapes",
                 recipe: str | None = None):
        from .worlds import check_clip_recipe, get_world

        self.world = get_world(world)
        self.recipe = check_clip_recipe(world, recipe)
        self.seed, self.batch_size, self.resolution = seed, batch_size, resolution

    def __call__(self, step: int):
        return self.world.clip_batch(self.seed, step, self.batch_size, self.resolution, recipe=self.recipe)


def train_clip(run_dir: str | Path = "runs/clip", preset: str = "shapes", cfg: TrainConfig | None = None,
               export: str | Path | None = None, workers: int = 1, validate: int = 300, world: str = "shapes",
               recipe: str | None = None, init: str | Path | None = None):
    """Train a tiny CLIP contrastively on a world ("shapes" or "emoji"); optionally export
    weights. `recipe`: one of the world's `clip_recipes` (default: its first); `init`: warm-start
    from a trained CLIP of the same preset. Validation per checkpoint: the world's zero-shot
    figures (`clip_report`) on `validate` fresh images."""
    from .checkpoints import export_weights
    from .clip import CLIP_PRESETS, contrastive_loss, new_clip
    from .worlds import check_clip_recipe, check_world_name, get_world

    check_world_name(world)
    cfg = cfg or TrainConfig()
    torch.manual_seed(cfg.seed)  # the initial weights too: same seed, same run
    recipe = check_clip_recipe(world, recipe)
    measured = get_world(world)
    clip = new_clip(preset)
    model_config = asdict(CLIP_PRESETS[preset])
    started = warm_start(clip, init, "clip") if init else {}

    def loss_fn(model, batch, gen):
        images, captions = batch
        return contrastive_loss(model.image_features(images), model.text_features(captions),
                                model.logit_scale)

    def on_checkpoint(step, model):
        if not validate or (step % 500 and step != cfg.steps):
            return {}
        model.eval()
        return measured.clip_report(model, n=validate)

    make_batch = Prefetcher(ClipBatch(cfg.seed, cfg.batch_size, clip.image_size, world, recipe), cfg.steps, workers)
    clip, _ = fit(clip, make_batch, loss_fn, cfg, run_dir, "clip", model_config, desc=f"clip ({world})",
                  on_checkpoint=on_checkpoint)
    if export and is_main_process():
        export_weights(clip, export, "clip", model_config,
                       {"train": asdict(cfg), "preset": preset, "world": world, "recipe": recipe,
                        "train_seconds": run_seconds(run_dir), **started})
    return clip


def evaluator_batch(seed: int, step: int, batch_size: int, resolutions=(32, 48, 64, 96, 128)):
    """Evaluator training batch: mixed one/two-object scenes with words, rendered at a
    random resolution per image, lightly degraded as generated images are."""
    import numpy as np

    from .evaluate import encode_labels
    from .images import resize
    from .world import WORDS, ShapesWorld, render_scene

    rng = np.random.default_rng([seed, step, 7])
    attrs, images = [], []
    for _ in range(batch_size):
        a, d = ShapesWorld.draw_scene(rng, 1 if rng.random() < 0.6 else 2, "all", word_prob=0.35)
        if a.get("word") and rng.random() < 0.5:  # words that lie about the scene, too
            a["word"] = str(rng.choice(WORDS))
            a["word_size"] = float(rng.uniform(0.12, 0.22))
            a["word_contrast"] = float(rng.uniform(0.4, 1.0))
        res = int(rng.choice(resolutions))
        img = torch.from_numpy(render_scene(a, res, d)).permute(2, 0, 1).float()[None] / 255
        images.append(resize(img, 64))
        attrs.append(a)
    x = torch.cat(images)
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    sigma = torch.rand(len(x), 1, 1, 1, generator=g) * 0.05
    noisy = torch.rand(len(x), 1, 1, 1, generator=g) < 0.5
    x = (x + noisy * sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, encode_labels(attrs)


class EvaluatorBatch:
    def __init__(self, seed: int, batch_size: int):
        self.seed, self.batch_size = seed, batch_size

    def __call__(self, step: int):
        return evaluator_batch(self.seed, step, self.batch_size)


def train_evaluator(run_dir: str | Path = "runs/evaluator", cfg: TrainConfig | None = None,
                    export: str | Path | None = None, workers: int = 1, validate: int = 500,
                    world: str = "shapes"):
    """Train a world's attribute evaluator on ground truth; optionally export weights. The
    world supplies the network, batches, loss and validation (`evaluator_recipe`)."""
    from .checkpoints import export_weights
    from .worlds import check_world_name, get_world

    check_world_name(world)
    cfg = cfg or TrainConfig(steps=1500, batch_size=128, lr=2e-3, weight_decay=0.01)
    torch.manual_seed(cfg.seed)  # the initial weights too: same seed, same run
    recipe = get_world(world).evaluator_recipe(validate)

    def loss_fn(model, batch, gen):
        x, labels = batch
        return recipe.loss(model(x), labels)

    def on_checkpoint(step, model):
        if step % 500 and step != cfg.steps:
            return {}
        return recipe.report(model)

    make_batch = Prefetcher(recipe.batches(cfg.seed, cfg.batch_size), cfg.steps, workers)
    net, _ = fit(recipe.net, make_batch, loss_fn, cfg, run_dir, "evaluator", recipe.config,
                 desc=f"evaluator ({world})", on_checkpoint=on_checkpoint)
    if export and is_main_process():
        export_weights(net, export, "evaluator", recipe.config,
                       {"train": asdict(cfg), "world": world, "train_seconds": run_seconds(run_dir)})
    return recipe.wrap(net)


# ----------------------------------------------------------------------------- decoder

class DecoderBatch:
    """Decoder training batch of step s: (images [B,3,R,R] in [0,1], z_i [B,D], caption
    tokens [B,L,W], token mask [B,L]); z_i from the frozen CLIP on a render of the same
    image at CLIP's input size."""

    def __init__(self, seed: int, batch_size: int, resolution: int, clip, world: str = "shapes"):
        from .worlds import get_world

        self.seed, self.batch_size, self.resolution, self.clip = seed, batch_size, resolution, clip
        self.world = get_world(world)

    def __call__(self, step: int):
        import numpy as np

        rng = np.random.default_rng([self.seed, step, 11])
        drawn, captions = [], []
        for _ in range(self.batch_size):
            a, d = self.world.draw_training(rng, "train", word_prob=0.25, multi_share=0.25)
            drawn.append((a, d))
            captions.append(self.world.training_caption(a, rng))
        render = lambda res: torch.from_numpy(np.stack(  # noqa: E731
            [self.world.render_drawn(a, d, res) for a, d in drawn])).permute(0, 3, 1, 2).float() / 255
        images = render(self.resolution)
        with torch.no_grad():
            z_i = self.clip.encode_image(render(self.clip.image_size))
            text, mask = self.clip.text_tokens(captions)
        return images, z_i, text, mask


def decoder_validation(decoder, clip, evaluator, n: int = 100, steps: int = 20, guidance: float = 3.0,
                       seed: int = 30_000, world: str = "shapes") -> dict:
    """Agreement, judged by the world's evaluator, between fresh images and their decodings
    from z_i alone (fresh x_T): `world.reconstruction_report`."""
    from .worlds import get_world

    batch = get_world(world, seed=seed).validation_images(n, clip.image_size)
    z_i = clip.encode_image(batch.images).to(next(decoder.parameters()).device)
    inpaint = None
    if decoder.unet.config.inpaint_channels:     # an inpainting decoder: nothing kept, all drawn
        from .decoder import inpaint_condition

        r = decoder.resolution
        inpaint = inpaint_condition(torch.zeros(n, 3, r, r), torch.ones(n, 1, r, r)).to(z_i.device)
    decoded = decoder.sample(z_i, steps=steps, guidance_clip=guidance, inpaint=inpaint,
                             generator=torch.Generator().manual_seed(seed)).cpu()
    return get_world(world).reconstruction_report(evaluator, decoded, batch)


def train_decoder(run_dir: str | Path = "runs/decoder", preset: str | None = None, cfg: TrainConfig | None = None,
                  export: str | Path | None = None, workers: int = 1, validate: int = 100,
                  cache: str | Path | None = None, init: str | Path | None = None, world: str = "shapes"):
    """Train the CLIP-conditioned base decoder; optionally export. By default on a world
    ("shapes" or "emoji") with its frozen shipped CLIP (validated by its evaluator); with `cache`, on the
    images and embeddings of an embedding cache built with images=<resolution> (any CLIP:
    the UNet's conditioning widths and resolution follow the cache). `preset`: the UNet (default:
    the world's `decoder_preset`). `init`: warm-start from
    a trained decoder whose tensors this preset contains (`warm_start`), e.g. the folded
    trunk ("folded32") that the shipped "base32" extends with its full-resolution stage."""
    from dataclasses import replace

    from .checkpoints import export_weights
    from .clip import load_clip
    from .decoder import DECODER_PRESETS, DiffusionDecoder, UNet
    from .embedding_cache import EmbeddingCache
    from .evaluate import load_evaluator

    from .worlds import get_world

    cfg = cfg or TrainConfig(steps=3000, batch_size=64, lr=1e-3, warmup=200, weight_decay=0.0, ema=0.999)
    torch.manual_seed(cfg.seed)  # the initial weights too: same seed, same run
    preset = preset or get_world(world).decoder_preset
    if preset not in DECODER_PRESETS:
        raise ValueError(f"unknown decoder preset {preset!r}; known: {sorted(DECODER_PRESETS)}")
    config = DECODER_PRESETS[preset]
    if cache is not None:
        data = EmbeddingCache(cache)
        if not data.manifest.get("images"):
            raise ValueError(f"the cache at {cache} holds no images; rebuild it with images=32 (or --images 32)")
        config = replace(config, resolution=int(data.manifest["images"]), clip_dim=data.dim,
                         text_dim=data.text_shape[1])
        clip_name, clip, validate = data.clip_name, None, 0
    else:
        clip_name, clip = world, load_clip(world)
    decoder = DiffusionDecoder(UNet(config))
    model_config = {"unet": asdict(config), "clip": clip_name, "schedule": "linear", "prediction": "v"}
    started = warm_start(decoder, init, "decoder") if init else {}
    evaluator = load_evaluator(world) if validate else None

    def loss_fn(model, batch, gen):
        images, z_i, text, mask = batch
        return model.loss(images, z_i, text, mask, gen)

    def on_checkpoint(step, model):
        if not validate or step % 500:
            return {}
        return decoder_validation(model, clip, evaluator, n=validate, world=world)

    if cache is not None:
        def make_batch(step):
            return data.decoder_batch(step, cfg.batch_size, cfg.seed)
    else:
        make_batch = Prefetcher(DecoderBatch(cfg.seed, cfg.batch_size, config.resolution, clip, world),
                                cfg.steps, workers)
    decoder, ema = fit(decoder, make_batch, loss_fn, cfg, run_dir, "decoder", model_config, desc=f"decoder ({world})",
                       on_checkpoint=on_checkpoint)
    final = ema if ema is not None else decoder
    if export and is_main_process():
        export_weights(final, export, "decoder", model_config,
                       {"train": asdict(cfg), "preset": preset, "train_seconds": run_seconds(run_dir), **started})
    return final


class UpsamplerBatch:
    """Upsampler training batch: random crops (crop px of the high-res render) and the
    matching crops of the degraded low-res render of the same scenes."""

    def __init__(self, seed: int, batch_size: int, low: int, high: int, crop: int, degradation: str,
                 world: str = "shapes"):
        from .worlds import get_world

        self.seed, self.batch_size = seed, batch_size
        self.low, self.high, self.crop, self.degradation = low, high, crop, degradation
        self.world = get_world(world)

    def __call__(self, step: int):
        import numpy as np

        from .degradations import blur_degrade, bsr_degrade

        rng = np.random.default_rng([self.seed, step, 13])
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        scenes = [self.world.draw_training(rng, "all", word_prob=0.3, multi_share=0.3)
                  for _ in range(self.batch_size)]
        render = lambda res: torch.from_numpy(np.stack(  # noqa: E731
            [self.world.render_drawn(a, d, res) for a, d in scenes])).permute(0, 3, 1, 2).float() / 255
        high, low = render(self.high), render(self.low)
        if self.degradation == "blur":
            low = blur_degrade(low, g)
        else:
            # a share of clean inputs, so that sharp inputs are not taken for degraded ones
            # and over-sharpened (the paper's BSR mix alone left our stage below bicubic)
            keep = (torch.rand(self.batch_size, generator=g) < BSR_CLEAN_SHARE)[:, None, None, None]
            low = torch.where(keep, low, bsr_degrade(low, g))
        k = self.high // self.low
        lc = self.crop // k
        his, los = [], []
        for i in range(self.batch_size):
            y, x = (int(v) for v in rng.integers(0, self.low - lc + 1, 2))
            los.append(low[i, :, y:y + lc, x:x + lc])
            his.append(high[i, :, y * k:(y + lc) * k, x * k:(x + lc) * k])
        return torch.stack(his), torch.stack(los)


UPSAMPLER_STAGES = {"up64": (32, 64, "blur"), "up128": (64, 128, "bsr")}
# Residual scale per stage (see DiffusionUpsampler): 0 diffuses the image itself. The
# residual's std is about 0.1 on our renders, so / 0.1 gives the model a unit-variance
# target like the noise; at / 0.5 it stayed small next to the noise and the stage learned
# almost nothing (one-step estimate = bicubic to 0.03 dB after 2000 steps).
UPSAMPLER_RESIDUAL = {"up64": 0.0, "up128": 0.1}
BSR_CLEAN_SHARE = 0.2


def upsampler_validation(upsampler, low: int, high: int, degradation: str, n: int = 64, steps: int = 10,
                         seed: int = 40_000, world: str = "shapes") -> dict:
    """PSNR (dB) of the upsampler and of bicubic upscaling against the true high-res render,
    on fresh images of a world; low-res inputs clean for the BSR stage (also reported after
    the BSR mix, as "*_bsr"), blurred as in training for the blur stage."""
    import numpy as np

    from .degradations import blur_degrade, bsr_degrade
    from .world import Batch
    from .worlds import get_world

    w = get_world(world, seed=seed)
    rng = np.random.default_rng(seed)
    drawn = [w.draw_training(rng, "all", word_prob=0.3, multi_share=0.0) for _ in range(n)]
    render = lambda res: torch.from_numpy(np.stack(  # noqa: E731
        [w.render_drawn(a, d, res) for a, d in drawn])).permute(0, 3, 1, 2).float() / 255
    batch, lows = Batch(render(high), [], [a for a, _ in drawn]), render(low)
    g = torch.Generator().manual_seed(seed)
    psnr = lambda a: float(10 * torch.log10(1 / ((a - batch.images) ** 2).mean()))  # noqa: E731
    inputs = {"": blur_degrade(lows, g)} if degradation == "blur" else {"": lows, "_bsr": bsr_degrade(lows, g)}
    out = {}
    device = next(upsampler.parameters()).device
    for suffix, x in inputs.items():
        up = upsampler.sample(x.to(device), steps=steps, generator=g).cpu()
        bicubic = upsampler.condition(x, high).add(1).div(2)
        out[f"psnr{suffix}"] = round(psnr(up), 2)
        out[f"bicubic_psnr{suffix}"] = round(psnr(bicubic), 2)
    return out


def train_upsampler(stage: str = "up64", run_dir: str | Path | None = None, cfg: TrainConfig | None = None,
                    export: str | Path | None = None, workers: int = 1, crop: int | None = None,
                    init: str | Path | None = None, preset: str | None = None, world: str = "shapes"):
    """Train one diffusion upsampler stage ("up64": 32->64, blur; "up128": 64->128, BSR) on a
    world's images.
    `preset` picks the UNet (default: the stage's name in UPSAMPLER_PRESETS; "<stage>_folded"
    is the trunk alone); `init` warm-starts from a trained stage (`warm_start`)."""
    from .checkpoints import export_weights
    from .decoder import UPSAMPLER_PRESETS, DiffusionUpsampler, UNet

    low, high, degradation = UPSAMPLER_STAGES[stage]
    run_dir = run_dir or f"runs/{stage}"
    cfg = cfg or TrainConfig(steps=2000, batch_size=32, lr=1e-3, warmup=100, weight_decay=0.0, ema=0.999)
    torch.manual_seed(cfg.seed)  # the initial weights too: same seed, same run
    preset = preset or stage
    if preset not in UPSAMPLER_PRESETS:
        raise ValueError(f"unknown upsampler preset {preset!r}; known: {sorted(UPSAMPLER_PRESETS)}")
    config = UPSAMPLER_PRESETS[preset]
    if config.resolution != high:
        raise ValueError(f"preset {preset!r} is a {config.resolution} px UNet; stage {stage} writes {high} px")
    crop = crop or high // 2
    residual = UPSAMPLER_RESIDUAL[stage]
    upsampler = DiffusionUpsampler(UNet(config), residual=residual)
    model_config = {"unet": asdict(config), "low": low, "high": high, "degradation": degradation,
                    "schedule": "linear", "prediction": "v", "residual": residual}
    started = warm_start(upsampler, init, "upsampler") if init else {}

    def loss_fn(model, batch, gen):
        hi, lo = batch
        return model.loss(hi, lo, gen)

    def on_checkpoint(step, model):
        if step % 500:
            return {}
        from .pipeline import SamplingDefaults

        steps = SamplingDefaults().upsampler_steps[list(UPSAMPLER_STAGES).index(stage)]
        return upsampler_validation(model, low, high, degradation, steps=steps, world=world)

    make_batch = Prefetcher(UpsamplerBatch(cfg.seed, cfg.batch_size, low, high, crop, degradation, world),
                            cfg.steps, workers)
    upsampler, ema = fit(upsampler, make_batch, loss_fn, cfg, run_dir, "upsampler",
                         model_config, desc=stage, on_checkpoint=on_checkpoint)
    final = ema if ema is not None else upsampler
    if export and is_main_process():
        export_weights(final, export, "upsampler", model_config,
                       {"train": asdict(cfg), "stage": stage, "preset": preset, "train_seconds": run_seconds(run_dir),
                        **started})
    return final


# ----------------------------------------------------------------------------- priors

class PriorBatch:
    """Prior training batch of step s: (z_i [B,D], caption token encodings [B,L,W], token
    mask [B,L], z_t [B,D]); z_i from the frozen CLIP on the scene's image, z_t and the
    tokens from one of the scene's captions."""

    def __init__(self, seed: int, batch_size: int, clip, two_object_share: float = 0.25, world: str = "shapes"):
        from .worlds import get_world

        self.seed, self.batch_size, self.clip, self.two = seed, batch_size, clip, two_object_share
        self.world = get_world(world)

    def scenes(self, step: int):
        import numpy as np

        rng = np.random.default_rng([self.seed, step, 17])
        drawn = [self.world.draw_training(rng, "train", word_prob=0.25, multi_share=self.two)
                 for _ in range(self.batch_size)]
        captions = [self.world.training_caption(a, rng) for a, _ in drawn]
        images = torch.from_numpy(np.stack([self.world.render_drawn(a, d, self.clip.image_size) for a, d in drawn]))
        return images.permute(0, 3, 1, 2).float() / 255, captions

    def __call__(self, step: int):
        images, captions = self.scenes(step)
        with torch.no_grad():
            z_i = self.clip.encode_image(images)
            z_t = self.clip.encode_text(captions)
            text, mask = self.clip.text_tokens(captions)
        return z_i, text, mask, z_t


def fit_prior_quantizer(clip, buckets: int, n: int = 20_000, seed: int = 50_000, keep_variance: float = 0.99,
                        world: str = "shapes"):
    """The autoregressive prior's PCA + buckets, fitted on the z_i of n training scenes."""
    from .prior import PCAQuantizer

    make = PriorBatch(seed, 500, clip, world=world)
    z_i, z_t = [], []
    for step in range(n // 500):
        images, captions = make.scenes(step)
        z_i.append(clip.encode_image(images))
        z_t.append(clip.encode_text(captions))
    return PCAQuantizer.fit(torch.cat(z_i), torch.cat(z_t), buckets, keep_variance=keep_variance)


def prior_validation(prior, clip, n: int = 200, seed: int = 60_000, world: str = "shapes") -> dict:
    """Mean cosine of sampled z_i with the true image's z_i, and the baseline of z_t itself."""
    device = next(prior.parameters()).device
    z_i, text, mask, z_t = (t.to(device) for t in PriorBatch(seed, n, clip, world=world)(0))
    sampled = prior.sample(text, mask, z_t, generator=torch.Generator().manual_seed(seed))
    return {"cos_sample": round(float((sampled * z_i).sum(-1).mean()), 4),
            "cos_z_t": round(float((z_t * z_i).sum(-1).mean()), 4)}


def cache_prior_validation(prior, cache, n: int = 200, seed: int = 60_000) -> dict:
    """prior_validation on a fixed batch of an embedding cache (examples it also trains on)."""
    device = next(prior.parameters()).device
    z_i, text, mask, z_t = (t.to(device) for t in cache.prior_batch(2**31 - 1, n, seed))
    sampled = prior.sample(text, mask, z_t, generator=torch.Generator().manual_seed(seed))
    return {"cos_sample": round(float((sampled * z_i).sum(-1).mean()), 4),
            "cos_z_t": round(float((z_t * z_i).sum(-1).mean()), 4)}


def train_prior(kind: str = "diffusion", run_dir: str | Path | None = None, preset: str = "shapes",
                cfg: TrainConfig | None = None, export: str | Path | None = None, workers: int = 1,
                validate: int = 200, cache: str | Path | None = None, world: str = "shapes"):
    """Train a prior ("diffusion" or "autoregressive"): by default on the embeddings of a
    world ("shapes" or "emoji") by its shipped CLIP; with `cache`, on an embedding cache of any CLIP (the
    prior's widths follow the cache), validated on a fixed batch of the cache."""
    from dataclasses import replace

    from .checkpoints import export_weights
    from .clip import load_clip
    from .embedding_cache import EmbeddingCache
    from .prior import PRIOR_PRESETS, AutoregressivePrior, DiffusionPrior, PCAQuantizer

    if kind not in ("diffusion", "autoregressive"):
        raise ValueError(f"unknown prior {kind!r}; known: 'diffusion', 'autoregressive'")
    run_dir = run_dir or f"runs/prior_{kind}"
    cfg = cfg or TrainConfig(steps=1500, batch_size=128, lr=1e-3, warmup=100, weight_decay=0.01, ema=0.999)
    torch.manual_seed(cfg.seed)  # the initial weights too: same seed, same run
    if preset not in PRIOR_PRESETS:
        raise ValueError(f"unknown prior preset {preset!r}; known: {sorted(PRIOR_PRESETS)}")
    config = PRIOR_PRESETS[preset]
    if cache is not None:
        data = EmbeddingCache(cache)
        length, width = data.text_shape
        config = replace(config, dim=data.dim, text_dim=width, text_len=length)
        clip_name, clip = data.clip_name, None
    else:
        clip_name, clip = world, load_clip(world)
    if kind == "diffusion":
        prior = DiffusionPrior(config)
    elif cache is not None:
        z_i, z_t = data.column("z_i", 20_000), data.column("z_t", 20_000)
        prior = AutoregressivePrior(config, PCAQuantizer.fit(z_i, z_t, config.buckets, keep_variance=0.99))
    else:
        prior = AutoregressivePrior(config, fit_prior_quantizer(clip, config.buckets, world=world))
    model_config = {"prior": asdict(prior.config), "kind": kind, "clip": clip_name}

    def loss_fn(model, batch, gen):
        z_i, text, mask, z_t = batch
        return model.loss(z_i, text, mask, z_t, gen)

    def on_checkpoint(step, model):
        if not validate or (step % 500 and step != cfg.steps):
            return {}
        model.eval()
        if cache is not None:
            return cache_prior_validation(model, data, n=min(validate, len(data)))
        return prior_validation(model, clip, n=validate, world=world)

    if cache is not None:
        def make_batch(step):
            return data.prior_batch(step, cfg.batch_size, cfg.seed)
    else:
        make_batch = Prefetcher(PriorBatch(cfg.seed, cfg.batch_size, clip, world=world), cfg.steps, workers)
    prior, ema = fit(prior, make_batch, loss_fn, cfg, run_dir, "prior", model_config, desc=f"{kind} prior",
                     on_checkpoint=on_checkpoint)
    final = ema if ema is not None else prior
    if export and is_main_process():
        export_weights(final, export, "prior", model_config,
                       {"train": asdict(cfg), "preset": preset, "train_seconds": run_seconds(run_dir)},
                       keep_float32=("quantizer.",))  # PCA basis and bucket edges stay exact
    return final

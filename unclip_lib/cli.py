"""The `unclip-lab` command: train components, make the demo gallery.

    unclip-lab train clip --steps 2000 --export data/clip_shapes.safetensors
    unclip-lab train evaluator --export data/evaluator_shapes.safetensors
    unclip-lab generate "a small red triangle" -n 8 -o grid.png
    unclip-lab edit scene.png "a blue star on the left" --box 0 0 16 32 -o edited.png
    unclip-lab demo --out outputs
    unclip-lab data emoji --resolutions 64,128     # rebuild the emoji world's images (npm)
    unclip-lab train clip --world emoji --export data/clip_emoji.safetensors

Your own captioned images (a folder with .txt captions, a .csv/.jsonl index, or tar shards):
    unclip-lab cache photos/ cache/photos --clip ViT-B-32 --pretrained laion2b_s34b_b79k --images 32
    unclip-lab train prior --kind diffusion --cache cache/photos --export my_prior.safetensors
    unclip-lab train decoder --cache cache/photos --export my_decoder.safetensors
    torchrun --nproc_per_node 2 -m unclip_lib.cli train prior --kind diffusion --cache cache/photos

Every argument (and every output path) is checked before torch or a model loads: a bad one
stops the command at once with one line naming the fix, and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from .checks import (IMAGE_SUFFIXES, MAX_BATCH, SCHEDULE_STEPS, check_captions, check_guidance, check_input_path,
                     check_int, check_number, check_output_file, check_output_folder, check_seed, check_steps,
                     is_foreign_weights)

# torch is imported by the commands that run, after their arguments are checked: a bad
# argument then costs no more than starting Python.


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line: 'unclip-lab generate: argument -n: ... (see --help)'."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _train_args(p: argparse.ArgumentParser, steps: int, batch: int, lr: float) -> None:
    p.add_argument("--run-dir", default=None, help="checkpoint folder (resumes if it holds one)")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch-size", type=int, default=batch)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--export", default=None, help="write the trained weights here (.safetensors)")
    p.add_argument("--log-every", type=int, default=10, help="write the loss to log.jsonl every this many steps")
    p.add_argument("--device", default="auto", help="auto (cuda, else mps, else cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="mixed precision for the forward pass (fp16 uses a gradient scaler)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="unclip-lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a component")
    tsub = train.add_subparsers(dest="component", required=True)
    p = tsub.add_parser("clip", help="tiny CLIP on a world (shapes or emoji)")
    _train_args(p, steps=2000, batch=256, lr=1e-3)
    p.add_argument("--preset", default=None, help="CLIP preset (default: the world's name)")
    p.add_argument("--world", default="shapes", choices=["shapes", "emoji"], help="the world to train on")
    p.add_argument("--recipe", default=None,
                   help="how batches are drawn, one of the world's CLIP recipes (emoji: reading, pairs; "
                        "default: the world's first)")
    p.add_argument("--init", default=None, help="warm-start from a trained CLIP (.safetensors) of the same preset")
    p = tsub.add_parser("evaluator", help="attribute evaluator on ground truth")
    _train_args(p, steps=1500, batch=128, lr=2e-3)
    p.add_argument("--world", default="shapes", choices=["shapes", "emoji"], help="the world to train on")
    p = tsub.add_parser("decoder", help="CLIP-conditioned base decoder (needs the world's shipped CLIP)")
    _train_args(p, steps=3000, batch=64, lr=1e-3)
    p.add_argument("--preset", default=None, help="UNet preset (default: the world's, base32 or emoji32)")
    p.add_argument("--validate", type=int, default=100, help="images decoded at each validation (0: none)")
    p.add_argument("--cache", default=None, help="train on an embedding cache (with images) instead of the world")
    p.add_argument("--init", default=None, help="warm-start from a trained decoder (.safetensors) this preset extends")
    p.add_argument("--world", default="shapes", choices=["shapes", "emoji"], help="the world to train on")
    p = tsub.add_parser("upsampler", help="a diffusion upsampler stage")
    _train_args(p, steps=2000, batch=32, lr=1e-3)
    p.add_argument("--stage", choices=["up64", "up128"], required=True)
    p.add_argument("--world", default="shapes", choices=["shapes", "emoji"], help="the world to train on")
    p.add_argument("--preset", default=None, help="UNet preset (default: the stage's; '<stage>_folded': the trunk)")
    p.add_argument("--init", default=None,
                   help="warm-start from a trained upsampler (.safetensors) this preset extends")
    p = tsub.add_parser("prior", help="a prior P(z_i | y) (needs the world's shipped CLIP)")
    _train_args(p, steps=1500, batch=128, lr=1e-3)
    p.add_argument("--kind", choices=["diffusion", "autoregressive"], required=True)
    p.add_argument("--world", default="shapes", choices=["shapes", "emoji"], help="the world to train on")
    p.add_argument("--preset", default=None, help="prior preset (default: the world's name)")
    p.add_argument("--cache", default=None, help="train on an embedding cache instead of the world")
    p.add_argument("--validate", type=int, default=200, help="captions sampled at each validation (0: none)")
    p = sub.add_parser("cache", help="precompute CLIP embeddings of your captioned images (resumable)")
    p.add_argument("source", help="a folder (image + .txt caption), a .csv/.jsonl index, or .tar shards")
    p.add_argument("out", help="cache folder (resumes if it holds a partial cache)")
    p.add_argument("--clip", default="shapes", help="'shapes', a CLIP .safetensors, or an open_clip model name")
    p.add_argument("--pretrained", default=None, help="open_clip pretrained tag (local cache only)")
    p.add_argument("--images", type=int, default=None, help="also store the images at this size (decoder training)")
    p.add_argument("--shard-size", type=int, default=1024)
    p.add_argument("--device", default="auto", help="where CLIP runs: auto (cuda, else mps, else cpu), cpu, cuda, mps")
    p.add_argument("--batch-size", type=int, default=64)
    p = sub.add_parser("generate", help="text to image with the shipped stack; one row per caption")
    p.add_argument("captions", nargs="+", help="one or more captions (quote each)")
    p.add_argument("-n", "--samples", type=int, default=8, help="images per caption")
    p.add_argument("-o", "--out", default="grid.png", help="PNG grid to write")
    p.add_argument("--prior", default="diffusion", choices=["diffusion", "autoregressive", "z_t", "caption"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prior-guidance", type=float, default=None)
    p.add_argument("--decoder-guidance", type=float, default=None)
    p.add_argument("--decoder-steps", type=int, default=None)
    p.add_argument("--base", action="store_true", help="stop at the decoder's base resolution")
    p.add_argument("--no-decoder-caption", action="store_true",
                   help="the decoder reads z_i alone, not the caption beside it (the ablation)")
    p.add_argument("--world", default="shapes", choices=["shapes", "emoji"], help="whose shipped stack draws")
    p = sub.add_parser("edit", help="redraw a box of an image from a caption (inpainting), keeping the rest")
    p.add_argument("image", help="the image to edit (PNG, JPEG, ...; square, or centre-cropped to a square)")
    p.add_argument("caption", help="what the image should show, e.g. 'a blue star on the left' (quote it)")
    p.add_argument("--box", type=int, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), required=True,
                   help="the region to redraw in pixels of the (cropped) image: columns X0..X1-1, rows Y0..Y1-1")
    p.add_argument("-o", "--out", default="edit.png", help="the edited image to write")
    p.add_argument("--prior", default="diffusion", choices=["diffusion", "autoregressive"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default=None, choices=["glide", "repaint"],
                   help="the inpainting decoder (default) or RePaint sampling of the plain decoder")
    p.add_argument("--resample", type=int, default=None,
                   help="with --method repaint: jumps back per step (default 2; 1: none)")
    p.add_argument("--base", action="store_true", help="stop at the decoder's base resolution")
    p = sub.add_parser("data", help="build a world's data from its pinned packages (emoji: needs npm)")
    p.add_argument("dataset", choices=["emoji"], help="which data to build")
    p.add_argument("options", nargs=argparse.REMAINDER,
                   help="the builder's own options (unclip-lab data emoji --help)")
    p = sub.add_parser("demo", help="render the demo gallery to a folder")
    p.add_argument("--out", default="outputs")
    p.add_argument("--seed", type=int, default=0)
    return parser


# ----------------------------------------------------------------------------- checks, before any work

_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def _check_device(device: str, name: str = "--device") -> None:
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"{name} must be auto, cpu, cuda, cuda:N or mps, got {device!r}")


def _check_weights(path, name: str) -> None:
    """A .safetensors file that exists."""
    check_input_path(path, name, "file", suffixes=(".safetensors",))


def _check_train(args) -> None:
    check_int(args.steps, "--steps", 1)
    check_int(args.batch_size, "--batch-size", 1)
    if not check_number(args.lr, "--lr", 0, hint="a learning rate such as 1e-3") > 0:
        raise ValueError(f"--lr must be a number > 0 (a learning rate such as 1e-3), got {args.lr}")
    check_seed(args.seed, "--seed")
    check_int(args.checkpoint_every, "--checkpoint-every", 1)
    check_int(args.log_every, "--log-every", 1)
    check_int(args.threads, "--threads", 1, optional=True)
    _check_device(args.device)
    if args.run_dir is not None:
        check_output_folder(args.run_dir, "--run-dir")
    if args.export is not None:
        check_output_file(args.export, "--export", (".safetensors",), create_folders=True)
    if getattr(args, "validate", None) is not None:
        check_int(args.validate, "--validate", 0, hint="0: no validation")
    if getattr(args, "init", None) is not None:
        _check_weights(args.init, "--init")
    if getattr(args, "recipe", None) is not None:
        from .worlds import check_clip_recipe

        check_clip_recipe(args.world, args.recipe)
    if getattr(args, "cache", None) is not None:
        check_input_path(args.cache, "--cache", "folder")


def _check_cache(args) -> None:
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise ValueError("runs in one process (its shards are numbered in order); run it without torchrun, then "
                         "train under torchrun from the cache")
    if not any(c in args.source for c in "{*?["):          # a shard pattern is expanded by the reader
        check_input_path(args.source, "source", kind="any")
    check_output_folder(args.out, "out")
    if args.clip.endswith(".safetensors") or is_foreign_weights(args.clip):
        _check_weights(args.clip, "--clip")
    check_int(args.images, "--images", 8, 1024, optional=True, hint="the image side stored, e.g. 32")
    check_int(args.shard_size, "--shard-size", 1)
    check_int(args.batch_size, "--batch-size", 1)
    _check_device(args.device)


def _check_generate(args) -> None:
    captions = check_captions(args.captions, "captions")
    n = check_int(args.samples, "-n/--samples", 1, MAX_BATCH, hint="images per caption")
    if n * len(captions) > MAX_BATCH:
        raise ValueError(f"-n/--samples: {n} images for each of {len(captions)} captions makes {n * len(captions)};"
                         f" one run samples at most {MAX_BATCH}, so give fewer captions or a smaller -n")
    check_output_file(args.out, "-o/--out", IMAGE_SUFFIXES)
    check_seed(args.seed, "--seed")
    check_guidance(args.prior_guidance, "--prior-guidance")
    check_guidance(args.decoder_guidance, "--decoder-guidance")
    check_steps(args.decoder_steps, "--decoder-steps", SCHEDULE_STEPS)


def _check_edit(args) -> None:
    check_input_path(args.image, "image", "file", IMAGE_SUFFIXES)
    check_captions([args.caption], "caption")
    check_output_file(args.out, "-o/--out", IMAGE_SUFFIXES)
    check_seed(args.seed, "--seed")
    check_int(args.resample, "--resample", 1, 100, optional=True, hint="1: no resampling")
    x0, y0, x1, y1 = args.box
    if x1 <= x0 or y1 <= y0 or min(args.box) < 0:
        raise ValueError(f"--box X0 Y0 X1 Y1 must satisfy 0 <= X0 < X1 and 0 <= Y0 < Y1 (pixels), got {args.box}")


def _check_demo(args) -> None:
    check_output_folder(args.out, "--out")
    check_seed(args.seed, "--seed")


CHECKS = {"train": _check_train, "cache": _check_cache, "generate": _check_generate, "edit": _check_edit,
          "demo": _check_demo}


def _fail(command: str, err: BaseException) -> int:
    """Print an error on one line (its own lines joined) and return the exit status 2."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    print(f"{command}: " + "; ".join(line.strip() for line in str(text).splitlines() if line.strip()),
          file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["data", "emoji"]:        # the builder parses (and checks) its own options
        from .emoji_data import main as build_emoji

        return build_emoji(argv[2:])
    args = build_parser().parse_args(argv)
    command = f"unclip-lab {args.command}" + (f" {args.component}" if args.command == "train" else "")
    try:
        CHECKS[args.command](args)
    except (TypeError, ValueError) as err:
        return _fail(command, err)
    try:
        return RUN[args.command](args)
    except (ValueError, KeyError, FileNotFoundError) as err:   # what the library raises for bad input
        return _fail(command, err)


# ----------------------------------------------------------------------------- the commands

def _train(args) -> int:
    import torch

    from .train import TrainConfig, train_clip, train_decoder, train_evaluator, train_prior, train_upsampler

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      checkpoint_every=args.checkpoint_every, log_every=args.log_every, device=args.device,
                      precision=args.precision)
    name = f"prior_{args.kind}" if args.component == "prior" else getattr(args, "stage", None) or args.component
    # runs/<component> for the shapes world (as before), runs/<world>/<component> for the others
    run_dir = args.run_dir or ("runs" if args.world == "shapes" else f"runs/{args.world}") + f"/{name}"
    if args.component == "clip":
        train_clip(run_dir, args.preset or args.world, cfg, export=args.export, world=args.world,
                   recipe=args.recipe, init=args.init)
    elif args.component == "prior":
        cfg.weight_decay, cfg.ema, cfg.warmup = 0.01, 0.999, 200
        train_prior(args.kind, run_dir, args.preset or args.world, cfg, export=args.export, cache=args.cache,
                    validate=args.validate, world=args.world)
    elif args.component == "evaluator":
        cfg.weight_decay = 0.01
        train_evaluator(run_dir, cfg, export=args.export, world=args.world)
    else:
        # diffusion models: no weight decay, EMA weights are what ships
        cfg.weight_decay, cfg.ema, cfg.warmup = 0.0, 0.999, 200
        if args.component == "decoder":
            train_decoder(run_dir, args.preset, cfg, export=args.export, validate=args.validate,
                          cache=args.cache, init=args.init, world=args.world)
        else:
            train_upsampler(args.stage, run_dir, cfg, export=args.export, init=args.init, preset=args.preset,
                            world=args.world)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()   # a torchrun job: leave the group cleanly
    return 0


def _cache(args) -> int:
    from .clip import load_clip
    from .data import CaptionedImages
    from .distributed import pick_device
    from .embedding_cache import build_embedding_cache

    clip = load_clip(args.clip, pretrained=args.pretrained, device=pick_device(args.device))
    data = CaptionedImages(args.source, resolution=clip.image_size, rank=0, world_size=1)
    m = build_embedding_cache(data, clip, args.out, shard_size=args.shard_size, batch_size=args.batch_size,
                              images=args.images, total=data.record_count())
    skipped = ", ".join(f"{n} {why}" for why, n in m.get("skipped", {}).items()) or "none"
    print(f"{args.out}: {m['count']} examples in {len(m['shards'])} shards (CLIP {m['clip']}); skipped: {skipped}")
    return 0


def _generate(args) -> int:
    import time

    from .pipeline import load_unclip
    from .viz import grid

    priors = (args.prior,) if args.prior in ("diffusion", "autoregressive") else ()
    pipe = load_unclip(args.world, priors=priors)
    captions = pipe.check_captions([c for c in args.captions for _ in range(args.samples)])
    t = time.perf_counter()
    images = pipe.generate(captions, prior=args.prior, seed=args.seed, prior_guidance=args.prior_guidance,
                           decoder_guidance=args.decoder_guidance, decoder_steps=args.decoder_steps,
                           upsample=not args.base, progress=True, decoder_caption=not args.no_decoder_caption)
    grid(images, nrow=args.samples).save(args.out)
    print(f"wrote {args.out}: {len(images)} images at {images.shape[-1]} px "
          f"({args.prior} prior) in {time.perf_counter() - t:.1f} s")
    return 0


def _edit(args) -> int:
    import time

    from PIL import Image, UnidentifiedImageError

    from .edits import box_mask
    from .images import as_image_batch, center_crop
    from .pipeline import load_unclip

    try:
        with Image.open(args.image) as img:
            image = center_crop(as_image_batch(img, "image"))
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"image: cannot read {args.image} as an image ({err})") from err
    size = image.shape[-1]
    x0, y0, x1, y1 = args.box
    if max(x1, y1) > size:
        raise ValueError(f"--box {x0} {y0} {x1} {y1} reaches beyond the image, which is {size} x {size} pixels"
                         " (after centre-cropping); keep X1 and Y1 at most " + str(size))
    pipe = load_unclip("shapes", priors=(args.prior,))
    t = time.perf_counter()
    out = pipe.inpaint(image, box_mask(x0, y0, x1, y1, size), caption=args.caption, prior=args.prior,
                       seed=args.seed, method=args.method, resample=args.resample, upsample=not args.base,
                       progress=True)
    Image.fromarray((out[0].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(args.out)
    print(f"wrote {args.out}: {out.shape[-1]} px, box ({x0}, {y0})-({x1}, {y1}) of {size} px redrawn as "
          f"{args.caption!r} in {time.perf_counter() - t:.1f} s")
    return 0


def _demo(args) -> int:
    from .demo import make_demo

    make_demo(args.out, seed=args.seed)
    return 0


RUN = {"train": _train, "cache": _cache, "generate": _generate, "edit": _edit, "demo": _demo}


if __name__ == "__main__":
    sys.exit(main())

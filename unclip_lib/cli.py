"""The `unclip-lab` command: train components, make the demo gallery.

    unclip-lab train clip --steps 2000 --export data/clip_shapes.safetensors
    unclip-lab train evaluator --export data/evaluator_shapes.safetensors
    unclip-lab generate "a small red triangle" -n 8 -o grid.png
    unclip-lab demo --out outputs

Your own captioned images (a folder with .txt captions, a .csv/.jsonl index, or tar shards):
    unclip-lab cache photos/ cache/photos --clip ViT-B-32 --pretrained laion2b_s34b_b79k --images 32
    unclip-lab train prior --kind diffusion --cache cache/photos --export my_prior.safetensors
    unclip-lab train decoder --cache cache/photos --export my_decoder.safetensors
    torchrun --nproc_per_node 2 -m unclip_lib.cli train prior --kind diffusion --cache cache/photos
"""
from __future__ import annotations

import argparse
import os
import sys

import torch


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unclip-lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a component")
    tsub = train.add_subparsers(dest="component", required=True)
    p = tsub.add_parser("clip", help="tiny CLIP on the shapes world")
    _train_args(p, steps=2000, batch=256, lr=1e-3)
    p.add_argument("--preset", default="shapes")
    p = tsub.add_parser("evaluator", help="attribute evaluator on ground truth")
    _train_args(p, steps=1500, batch=128, lr=2e-3)
    p = tsub.add_parser("decoder", help="CLIP-conditioned base decoder (needs the shipped CLIP)")
    _train_args(p, steps=3000, batch=64, lr=1e-3)
    p.add_argument("--preset", default="base32")
    p.add_argument("--validate", type=int, default=100, help="images decoded at each validation (0: none)")
    p.add_argument("--cache", default=None, help="train on an embedding cache (with images) instead of the world")
    p.add_argument("--init", default=None, help="warm-start from a trained decoder (.safetensors) this preset extends")
    p = tsub.add_parser("upsampler", help="a diffusion upsampler stage")
    _train_args(p, steps=2000, batch=32, lr=1e-3)
    p.add_argument("--stage", choices=["up64", "up128"], required=True)
    p.add_argument("--preset", default=None, help="UNet preset (default: the stage's; '<stage>_folded': the trunk)")
    p.add_argument("--init", default=None, help="warm-start from a trained upsampler (.safetensors) this preset extends")
    p = tsub.add_parser("prior", help="a prior P(z_i | y) (needs the shipped CLIP)")
    _train_args(p, steps=1500, batch=128, lr=1e-3)
    p.add_argument("--kind", choices=["diffusion", "autoregressive"], required=True)
    p.add_argument("--preset", default="shapes")
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
    p = sub.add_parser("demo", help="render the demo gallery to a folder")
    p.add_argument("--out", default="outputs")
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "train":
        from .train import TrainConfig, train_clip, train_decoder, train_evaluator, train_prior, train_upsampler

        if args.threads:
            torch.set_num_threads(args.threads)
        cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          checkpoint_every=args.checkpoint_every, log_every=args.log_every, device=args.device,
                          precision=args.precision)
        run_dir = args.run_dir or f"runs/{getattr(args, 'stage', None) or args.component}"
        if args.component == "prior":
            run_dir = args.run_dir or f"runs/prior_{args.kind}"
        if args.component == "clip":
            train_clip(run_dir, args.preset, cfg, export=args.export)
        elif args.component == "prior":
            cfg.weight_decay, cfg.ema, cfg.warmup = 0.01, 0.999, 200
            train_prior(args.kind, run_dir, args.preset, cfg, export=args.export, cache=args.cache,
                        validate=args.validate)
        elif args.component == "evaluator":
            cfg.weight_decay = 0.01
            train_evaluator(run_dir, cfg, export=args.export)
        else:
            # diffusion models: no weight decay, EMA weights are what ships
            cfg.weight_decay, cfg.ema, cfg.warmup = 0.0, 0.999, 200
            if args.component == "decoder":
                train_decoder(run_dir, args.preset, cfg, export=args.export, validate=args.validate,
                              cache=args.cache, init=args.init)
            else:
                train_upsampler(args.stage, run_dir, cfg, export=args.export, init=args.init, preset=args.preset)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()   # a torchrun job: leave the group cleanly
        return 0
    if args.command == "cache":
        from .clip import load_clip
        from .data import CaptionedImages
        from .distributed import pick_device
        from .embedding_cache import build_embedding_cache

        if int(os.environ.get("WORLD_SIZE", 1)) > 1:
            print("unclip-lab cache runs in one process (its shards are numbered in order); run it without "
                  "torchrun, then train under torchrun from the cache", file=sys.stderr)
            return 2
        clip = load_clip(args.clip, pretrained=args.pretrained, device=pick_device(args.device))
        data = CaptionedImages(args.source, resolution=clip.image_size, rank=0, world_size=1)
        m = build_embedding_cache(data, clip, args.out, shard_size=args.shard_size, batch_size=args.batch_size,
                                  images=args.images, total=data.record_count())
        skipped = ", ".join(f"{n} {why}" for why, n in m.get("skipped", {}).items()) or "none"
        print(f"{args.out}: {m['count']} examples in {len(m['shards'])} shards (CLIP {m['clip']}); skipped: {skipped}")
        return 0
    if args.command == "generate":
        return _generate(args)
    if args.command == "demo":
        from .demo import make_demo

        make_demo(args.out, seed=args.seed)
        return 0
    return 1


def _generate(args) -> int:
    import time

    from .pipeline import load_unclip
    from .viz import grid

    if args.samples < 1:
        print("unclip-lab generate: -n must be at least 1", file=sys.stderr)
        return 2
    pipe = load_unclip("shapes")
    captions = [c for c in args.captions for _ in range(args.samples)]
    try:
        pipe.check_captions(captions)
    except (ValueError, TypeError) as err:
        print(f"unclip-lab generate: {err}", file=sys.stderr)
        return 2
    t = time.perf_counter()
    images = pipe.generate(captions, prior=args.prior, seed=args.seed, prior_guidance=args.prior_guidance,
                           decoder_guidance=args.decoder_guidance, decoder_steps=args.decoder_steps,
                           upsample=not args.base, progress=True)
    grid(images, nrow=args.samples).save(args.out)
    print(f"wrote {args.out}: {len(images)} images at {images.shape[-1]} px "
          f"({args.prior} prior) in {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

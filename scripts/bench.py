"""Measure the figures of BENCHMARKS.md and print them as Markdown.

    python scripts/bench.py --seed 2024            # any seed: the figures must hold
    python scripts/bench.py --seed 7 > /tmp/b.md

Figures: rendering rate (one core), CLIP zero-shot accuracy on fresh one-object images
and on the held-out combinations, evaluator accuracy at 32/64/128 px, training time of the
shipped weights (read from their metadata).
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from unclip_lib import ShapesWorld, load_clip, load_evaluator
from unclip_lib.checkpoints import read_metadata, shipped_path
from unclip_lib.evaluate import attribute_accuracy, scene_accuracy, zero_shot_accuracy

KEYS = ("shape", "color", "size", "position")


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def render_rate(n: int = 2000) -> float:
    torch.set_num_threads(1)
    world = ShapesWorld(seed=0)
    world.sample(50)
    t = time.perf_counter()
    world.sample(n, resolution=64)
    rate = n / (time.perf_counter() - t)
    torch.set_num_threads(2)
    return rate


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    p.add_argument("-n", type=int, default=1000)
    args = p.parse_args()
    out = [f"Measured on {machine()}; `python scripts/bench.py --seed {args.seed}`.", ""]
    out.append(f"- Rendering: {render_rate():,.0f} images/s at 64 px on one core (one-object scenes).")

    clip = load_clip("shapes")
    fresh = ShapesWorld(seed=args.seed).sample(args.n, objects=1)
    held = ShapesWorld(seed=args.seed + 1).sample(args.n // 2, split="held_out")
    zs, zh = (zero_shot_accuracy(clip, b.images, b.attributes) for b in (fresh, held))
    meta = read_metadata(shipped_path("clip/shapes"))["extra"]
    out += ["", "CLIP zero-shot (ranking all 480 canonical captions):", "",
            "| images | shape | colour | size | position | exact caption |", "|---|---|---|---|---|---|"]
    for name, acc, n in (("fresh, one object", zs, args.n), ("held-out shape x colour", zh, args.n // 2)):
        out.append(f"| {name} ({n}) | " + " | ".join(f"{acc[k]:.1%}" for k in KEYS) + f" | {acc['exact']:.1%} |")
    out.append(f"\nCLIP training: {meta['train']['steps']} steps of batch {meta['train']['batch_size']}, "
               f"{meta.get('session_seconds', 0) / 60:.0f} CPU-minutes (wall clock, 2 cores).")

    ev = load_evaluator("shapes")
    out += ["", "Attribute evaluator on fresh renders (all combinations, 30% with a word):", "",
            "| resolution | objects | shape | colour | size | position | background | word |",
            "|---|---|---|---|---|---|---|---|"]
    for res in (32, 64, 128):
        for objects in (1, 2):
            b = ShapesWorld(seed=args.seed + res + objects).sample(
                args.n // 2, objects=objects, resolution=res, split="all", word_prob=0.3)
            acc = scene_accuracy(ev.predict(b.images), b.attributes)
            out.append(f"| {res} px | {objects} | " + " | ".join(
                f"{acc[k]:.1%}" for k in KEYS + ("background", "word")) + " |")
    emeta = read_metadata(shipped_path("evaluator/shapes"))["extra"]
    out.append(f"\nEvaluator training: {emeta['train']['steps']} steps of batch "
               f"{emeta['train']['batch_size']}, {emeta.get('session_seconds', 0) / 60:.0f} CPU-minutes.")
    print("\n".join(out))


if __name__ == "__main__":
    main()

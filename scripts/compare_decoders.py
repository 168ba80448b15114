"""Two base decoders side by side on the same fresh images of a world: each decodes the CLIP
image embeddings z_i of the same images from the same noise with the pipeline's defaults, and the
world's evaluator reads what each kept. Use it before replacing a shipped decoder:

    python scripts/compare_decoders.py runs/emoji/decoder.safetensors data/decoder_emoji.safetensors \\
        --world emoji --seed 4242 -n 200

A decoder is a shipped name ("emoji", "shapes") or a .safetensors checkpoint. Prints, per split of
the world (training and held-out pairs), the share of images whose attributes the decodings keep.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unclip_lib import load_evaluator, load_unclip  # noqa: E402
from unclip_lib.decoder import load_decoder  # noqa: E402
from unclip_lib.worlds import get_world  # noqa: E402


def reconstruction(pipe, evaluator, world, batch, seed: int, chunk: int = 100) -> dict[str, float]:
    """Decode the z_i of `batch.images` [N,3,H,W] from fresh noise (`seed`) with the pipeline's
    defaults; the world's evaluator report on what the decodings kept (world.reconstruction_report)."""
    z = pipe.clip.encode_image(batch.images)
    decoded = torch.cat([pipe.decode(z[i:i + chunk], seed=seed + i, upsample=False)
                         for i in range(0, len(z), chunk)])
    return world.reconstruction_report(evaluator, decoded, batch)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("decoders", nargs=2, help="two decoders: shipped names or .safetensors paths")
    p.add_argument("--world", default="emoji", choices=("shapes", "emoji"))
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("-n", type=int, default=200, help="fresh images per split")
    args = p.parse_args()
    decoders = {name: load_decoder(name) for name in args.decoders}   # fails here, before any slow work
    pipe, evaluator = load_unclip(args.world, priors=()), load_evaluator(args.world)
    world = get_world(args.world, seed=args.seed)
    for split in ("train", "held_out"):
        batch = world.sample(args.n, split=split, seed=args.seed + 1)
        for name, decoder in decoders.items():
            pipe.decoder = decoder
            report = reconstruction(pipe, evaluator, world, batch, args.seed)
            print(f"{split:9s} {name}: " + ", ".join(f"{k} {v:.1%}" for k, v in report.items()), flush=True)


if __name__ == "__main__":
    main()

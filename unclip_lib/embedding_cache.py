"""Precomputed CLIP embeddings of a captioned dataset, sharded on disk, as the paper's priors
were trained: CLIP is frozen, so its outputs are computed once.

    data = CaptionedImages("photos/", resolution=clip.image_size)
    build_embedding_cache(data, clip, "cache/photos", images=32)   # resumable; a progress bar
    cache = EmbeddingCache("cache/photos")
    z_i, text, mask, z_t = cache.prior_batch(step=0, batch_size=64, seed=0)
    images, z_i, text, mask = cache.decoder_batch(step=0, batch_size=64, seed=0)

Each shard (`shard-00000.safetensors`, `shard_size` examples) holds z_i [n, D] and z_t [n, D]
(float32), the caption's per-token encodings [n, L, W] (float16) and their mask [n, L], and,
with `images=r`, the images themselves at r x r (uint8) for training a decoder. A shard is
written atomically, then `manifest.json` records it, so an interrupted build keeps every
finished shard and resumes after the last one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .images import resize

MANIFEST = "manifest.json"
KIND = "embedding_cache"


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    tmp = out_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out_dir / MANIFEST)


@torch.no_grad()
def _encode(clip, keys, images, captions, image_size: int | None) -> dict[str, torch.Tensor]:
    x = torch.stack(images)
    text, mask = clip.text_tokens(captions)
    out = {"z_i": clip.encode_image(x), "z_t": clip.encode_text(captions),
           "text": text.half(), "mask": mask.to(torch.uint8)}
    if image_size:
        out["images"] = (resize(x, image_size) * 255).round().to(torch.uint8)
    return out


def build_embedding_cache(dataset, clip, out_dir: str | Path, shard_size: int = 1024, batch_size: int = 64,
                          images: int | None = None, progress: bool = True, total: int | None = None) -> dict:
    """Encode every (key, image, caption) of `dataset` with `clip` into shards under out_dir.

    Resumes a partial cache: the examples already in finished shards are skipped (the
    dataset must yield them in the same order, as CaptionedImages does). images=r also
    stores each image at r x r for decoder training. Returns the manifest."""
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard_size and batch_size must be positive, got {shard_size} and {batch_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fresh = {"kind": KIND, "clip": clip.name, "dim": None, "images": images, "shards": [], "count": 0,
             "complete": False}
    path = out_dir / MANIFEST
    manifest = json.loads(path.read_text()) if path.exists() else fresh
    if (manifest.get("clip"), manifest.get("images")) != (clip.name, images):
        raise CheckpointError(f"{out_dir} holds a cache made with CLIP {manifest.get('clip')!r} and images="
                              f"{manifest.get('images')}, not {clip.name!r} and {images}; use another folder")
    if manifest.get("complete"):
        return manifest
    done = manifest["count"]
    bar = tqdm(total=total, initial=done, desc="embedding cache", unit="img", disable=not progress)
    pending: list[dict] = []            # encoded batches of the shard being filled
    batch: tuple[list, list, list] = ([], [], [])
    filled = 0
    seen = 0

    def flush_batch():
        nonlocal batch, filled
        if batch[0]:
            pending.append(_encode(clip, *batch, images) | {"keys": list(batch[0])})
            filled += len(batch[0])
            bar.update(len(batch[0]))
            batch = ([], [], [])

    def write_shard():
        nonlocal pending, filled
        if not pending:
            return
        tensors = {k: torch.cat([p[k] for p in pending]) for k in pending[0] if k != "keys"}
        keys = [k for p in pending for k in p["keys"]]
        name = f"shard-{len(manifest['shards']):05d}.safetensors"
        save_checkpoint(out_dir / name, tensors, KIND, {"clip": clip.name}, {"keys": keys}, write_json=False)
        manifest["shards"].append({"file": name, "count": len(keys)})
        manifest["count"] += len(keys)
        manifest["dim"] = int(tensors["z_i"].shape[1])
        manifest["text_shape"] = list(tensors["text"].shape[1:])
        _write_manifest(out_dir, manifest)       # only now is the shard part of the cache
        pending, filled = [], 0

    for key, image, caption in dataset:
        seen += 1
        if seen <= done:                          # already in a finished shard
            continue
        for part, value in zip(batch, (key, image, caption)):
            part.append(value)
        if len(batch[0]) == min(batch_size, shard_size - filled):
            flush_batch()
        if filled == shard_size:
            write_shard()
    flush_batch()
    write_shard()
    bar.close()
    manifest["complete"] = True
    manifest["skipped"] = dict(getattr(dataset, "skipped", {}))
    _write_manifest(out_dir, manifest)
    return manifest


class EmbeddingCache:
    """A finished (or partial) embedding cache, loaded into memory for sampling batches."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.exists():
            raise FileNotFoundError(f"no embedding cache at {self.path} (no {MANIFEST}); build one with "
                                    "build_embedding_cache or `unclip-lab cache`")
        self.manifest = json.loads(manifest.read_text())
        if not self.manifest["shards"]:
            raise ValueError(f"the embedding cache at {self.path} holds no examples yet")
        parts = [load_checkpoint(self.path / s["file"], KIND)[0] for s in self.manifest["shards"]]
        self.tensors = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def __len__(self) -> int:
        return int(self.tensors["z_i"].shape[0])

    @property
    def clip_name(self) -> str:
        return self.manifest["clip"]

    @property
    def dim(self) -> int:
        return int(self.tensors["z_i"].shape[1])

    @property
    def text_shape(self) -> tuple[int, int]:
        return tuple(self.tensors["text"].shape[1:])

    def indices(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """The examples of training step `step`: a pure function of (seed, step)."""
        rng = np.random.default_rng([seed, step, 29])
        return torch.from_numpy(rng.integers(0, len(self), batch_size))

    def prior_batch(self, step: int, batch_size: int, seed: int = 0):
        """(z_i [B, D], text [B, L, W], mask [B, L], z_t [B, D]) as PriorBatch gives them."""
        i = self.indices(step, batch_size, seed)
        t = self.tensors
        return t["z_i"][i], t["text"][i].float(), t["mask"][i].bool(), t["z_t"][i]

    def decoder_batch(self, step: int, batch_size: int, seed: int = 0):
        """(images [B, 3, r, r] in [0, 1], z_i [B, D], text [B, L, W], mask [B, L]) as DecoderBatch."""
        if "images" not in self.tensors:
            raise ValueError(f"the cache at {self.path} holds no images; rebuild it with images=<resolution>")
        i = self.indices(step, batch_size, seed)
        t = self.tensors
        return t["images"][i].float() / 255, t["z_i"][i], t["text"][i].float(), t["mask"][i].bool()

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
finished shard and resumes after the last one (skipping the examples whose keys the finished
shards hold, without decoding them again).

Training reads a batch's rows straight from the shards' memory maps: nothing is loaded whole,
so a cache may be larger than memory (token encodings dominate: L x W x 2 bytes an example).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from .checkpoints import CheckpointError, read_metadata, save_checkpoint
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

    Resumes a partial cache: the examples already in finished shards are skipped. A
    CaptionedImages passes over their keys without decoding the images; any other iterable
    must yield them first, in the same order (checked key by key). images=r also
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
    done_keys = [k for s in manifest["shards"] for k in read_metadata(out_dir / s["file"])["extra"]["keys"]]
    if hasattr(dataset, "skip_keys"):             # CaptionedImages passes over them before decoding
        dataset.skip_keys = set(done_keys)
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
        if not hasattr(dataset, "skip_keys") and seen < done:   # a plain iterable: skip by position
            if key != done_keys[seen]:
                raise CheckpointError(f"{out_dir} was built from other data: example {seen} is {key!r} here but "
                                      f"{done_keys[seen]!r} in the cache; use another folder")
            seen += 1
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
    """A finished (or partial) embedding cache. Rows are read from the shard files on demand
    (safetensors slices), so it costs memory only for the batches taken from it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.exists():
            raise FileNotFoundError(f"no embedding cache at {self.path} (no {MANIFEST}); build one with "
                                    "build_embedding_cache or `unclip-lab cache`")
        self.manifest = json.loads(manifest.read_text())
        if not self.manifest["shards"]:
            raise ValueError(f"the embedding cache at {self.path} holds no examples yet")
        self._files = [self.path / s["file"] for s in self.manifest["shards"]]
        for f in self._files:
            if read_metadata(f)["kind"] != KIND:
                raise CheckpointError(f"{f} is not a shard of an embedding cache")
        self._starts = np.cumsum([0] + [s["count"] for s in self.manifest["shards"]])
        with safe_open(str(self._files[0]), framework="pt") as first:
            self.names = tuple(sorted(first.keys()))
            self._shapes = {k: tuple(first.get_slice(k).get_shape()[1:]) for k in self.names}
            self._dtypes = {k: first.get_slice(k)[:1].dtype for k in self.names}

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def clip_name(self) -> str:
        return self.manifest["clip"]

    @property
    def dim(self) -> int:
        return int(self._shapes["z_i"][0])

    @property
    def text_shape(self) -> tuple[int, int]:
        return self._shapes["text"]

    def gather(self, name: str, index) -> torch.Tensor:
        """Rows `index` [B] (ints in [0, len)) of one stored tensor: [B, ...] as stored."""
        if name not in self.names:
            raise KeyError(f"the cache at {self.path} stores {self.names}, not {name!r}")
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"rows must lie in [0, {len(self)}), got {index.min()}..{index.max()}")
        shards = np.searchsorted(self._starts, index, side="right") - 1
        out = torch.empty((len(index), *self._shapes[name]), dtype=self._dtypes[name])
        for s in np.unique(shards):                       # one shard file open at a time
            at = np.nonzero(shards == s)[0]
            with safe_open(str(self._files[s]), framework="pt") as f:
                rows = f.get_slice(name)
                for j in at:
                    r = int(index[j] - self._starts[s])
                    out[j] = rows[r:r + 1][0]
        return out

    def column(self, name: str, limit: int | None = None) -> torch.Tensor:
        """The first `limit` (default: all) rows of one stored tensor, read into memory."""
        n = len(self) if limit is None else min(int(limit), len(self))
        parts, left = [], n
        for file, s in zip(self._files, self.manifest["shards"]):
            if left <= 0:
                break
            take = min(left, s["count"])
            with safe_open(str(file), framework="pt") as f:
                parts.append(f.get_slice(name)[:take])
            left -= take
        return torch.cat(parts) if parts else torch.empty((0, *self._shapes[name]), dtype=self._dtypes[name])

    def indices(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """The examples of training step `step`: a pure function of (seed, step)."""
        rng = np.random.default_rng([seed, step, 29])
        return torch.from_numpy(rng.integers(0, len(self), batch_size))

    def prior_batch(self, step: int, batch_size: int, seed: int = 0):
        """(z_i [B, D], text [B, L, W], mask [B, L], z_t [B, D]) as PriorBatch gives them."""
        i = self.indices(step, batch_size, seed)
        return (self.gather("z_i", i), self.gather("text", i).float(), self.gather("mask", i).bool(),
                self.gather("z_t", i))

    def decoder_batch(self, step: int, batch_size: int, seed: int = 0):
        """(images [B, 3, r, r] in [0, 1], z_i [B, D], text [B, L, W], mask [B, L]) as DecoderBatch."""
        if "images" not in self.names:
            raise ValueError(f"the cache at {self.path} holds no images; rebuild it with images=<resolution>")
        i = self.indices(step, batch_size, seed)
        return (self.gather("images", i).float() / 255, self.gather("z_i", i), self.gather("text", i).float(),
                self.gather("mask", i).bool())

"""Your own captioned images: a folder, a CSV or JSONL index, or WebDataset tar shards.

    data = CaptionedImages("photos/")                     # a.jpg + a.txt, b.png + b.txt, ...
    data = CaptionedImages("index.jsonl")                 # {"path": "a.jpg", "caption": "..."} per line
    data = CaptionedImages("pairs.csv")                   # columns path,caption (a header row)
    data = CaptionedImages("shards/{00000..00009}.tar")   # img2dataset's output: 000001.jpg + 000001.txt
    for key, image, caption in data: ...                  # image [3, R, R] in [0, 1]

Everything streams: a folder or index is listed (paths only), a tar shard is read member by
member, so a dataset larger than memory works. Images are centre-cropped to a square and
resized to `resolution`. Unreadable images, missing or empty captions and corrupt shards
are skipped and counted (`data.skipped`), with one warning per kind, never a crash mid-epoch.

Under several processes (torchrun / DDP) and DataLoader workers, every (rank, worker) reads
its own part: whole shards when there are enough of them, every k-th record otherwise.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
import tarfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .images import as_image_batch, resize

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CAPTION_KEYS = ("caption", "text", "txt", "prompt")
PATH_KEYS = ("path", "image", "file")


def expand_shards(pattern: str | list[str]) -> list[str]:
    """Shard paths from a list, a glob ("shards/*.tar") or a brace range ("s/{000..009}.tar")."""
    if isinstance(pattern, (list, tuple)):
        return [str(p) for p in pattern]
    m = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if m:
        lo, hi, width = int(m.group(1)), int(m.group(2)), len(m.group(1))
        return [pattern[:m.start()] + str(i).zfill(width) + pattern[m.end():] for i in range(lo, hi + 1)]
    return sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]


def square_image(data: bytes | str | Path, resolution: int) -> torch.Tensor:
    """Decode an image file (bytes or path), centre-crop it to a square, resize: [3, R, R]."""
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
        img.load()
        img = ImageOps.exif_transpose(img)        # phones store the rotation in EXIF, not in the pixels
        w, h = img.size
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        x = as_image_batch(img)
    return resize(x, resolution)[0]


def _caption_of(raw: bytes | str, suffix: str) -> str | None:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    if suffix == ".json":
        try:
            meta = json.loads(text)
        except json.JSONDecodeError:
            return None
        text = next((meta[k] for k in CAPTION_KEYS if isinstance(meta.get(k), str)), None)
        if text is None:
            return None
    text = " ".join(text.split())
    return text or None


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class CaptionedImages(torch.utils.data.IterableDataset):
    """Stream (key, image [3, R, R] in [0, 1], caption) from a folder, an index file or tar shards.

    rank / world_size default to the process group (or RANK / WORLD_SIZE); limit caps how
    many records this reader yields (after its share is taken)."""

    def __init__(self, source: str | Path | list, resolution: int = 64, rank: int | None = None,
                 world_size: int | None = None, limit: int | None = None):
        if resolution < 8:
            raise ValueError(f"resolution must be at least 8 pixels, got {resolution}")
        self.resolution, self.limit = resolution, limit
        self.rank, self.world_size = rank, world_size
        self.kind, self.sources = self._resolve(source)
        self.skipped: Counter = Counter()
        self._warned: set = set()
        # keys passed over before decoding (a resumed embedding cache already holds them)
        self.skip_keys: set = set()

    @staticmethod
    def _resolve(source) -> tuple[str, list[str]]:
        if isinstance(source, (list, tuple)):
            return "tar", expand_shards(source)
        s = str(source)
        if os.path.isdir(s):
            return "folder", [s]
        if s.endswith((".csv", ".jsonl", ".json")):
            if not os.path.isfile(s):
                raise FileNotFoundError(f"no index file at {s}")
            return "index", [s]
        shards = expand_shards(s)
        if shards and all(p.endswith(".tar") for p in shards):
            missing = [p for p in shards if not os.path.isfile(p)]
            if len(missing) == len(shards):
                raise FileNotFoundError(f"no tar shards found for {s!r}")
            return "tar", shards
        raise ValueError(f"cannot read {s!r}: give a folder of images with .txt captions, a .csv or .jsonl index "
                         "(path,caption), or WebDataset .tar shards (a path, a glob or 'name-{000..009}.tar')")

    # ------------------------------------------------------------------ records
    def _skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        if reason not in self._warned:
            self._warned.add(reason)
            warnings.warn(f"skipping {where}: {reason} (further cases are counted in .skipped)", stacklevel=3)

    def _folder_records(self, root: str) -> Iterator[tuple[str, object, str | None]]:
        files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        for p in files:
            txt = p.with_suffix(".txt")
            caption = _caption_of(txt.read_bytes(), ".txt") if txt.is_file() else None
            yield str(p.relative_to(root)), p, caption

    def _index_records(self, index: str) -> Iterator[tuple[str, object, str | None]]:
        base = Path(index).parent
        with open(index, newline="", encoding="utf-8") as f:
            if index.endswith(".csv"):
                rows = csv.DictReader(f)
                columns = set(rows.fieldnames or ())
                if not columns & set(PATH_KEYS) or not columns & set(CAPTION_KEYS):
                    raise ValueError(f"{index} needs a header row naming an image column ({', '.join(PATH_KEYS)}) "
                                     f"and a caption column ({', '.join(CAPTION_KEYS)}); it has {sorted(columns)}")
                for i, row in enumerate(rows):
                    path = next((row[k] for k in PATH_KEYS if isinstance(row.get(k), str) and row[k]), None)
                    caption = next((row[k] for k in CAPTION_KEYS if row.get(k)), None)
                    yield (path or f"row {i}"), (base / path if path else None), \
                        (_caption_of(caption, ".txt") if caption else None)
            else:
                for i, line in enumerate(f):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        row = None
                    if not isinstance(row, dict):
                        self._skip("unreadable index line", f"{index}:{i + 1}")
                        continue
                    path = next((row[k] for k in PATH_KEYS if isinstance(row.get(k), str) and row[k]), None)
                    caption = next((row[k] for k in CAPTION_KEYS if isinstance(row.get(k), str)), None)
                    yield (path or f"line {i + 1}"), (base / path if path else None), \
                        (_caption_of(caption, ".txt") if caption else None)

    def _tar_records(self, shard: str) -> Iterator[tuple[str, object, str | None]]:
        """WebDataset layout: the files of one sample share a key (the name up to the first
        dot) and are consecutive in the tar; images and .txt/.json captions are used."""
        key, image, caption = None, None, None
        try:
            with tarfile.open(shard, "r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    name = os.path.basename(member.name)
                    k, _, ext = name.partition(".")
                    k = os.path.join(os.path.dirname(member.name), k)
                    if k != key:
                        if key is not None:
                            yield f"{shard}:{key}", image, caption
                        key, image, caption = k, None, None
                    suffix = "." + ext.lower().rsplit(".", 1)[-1]
                    if suffix in IMAGE_EXTENSIONS:
                        image = tar.extractfile(member).read()
                    elif suffix in (".txt", ".json") and caption is None:
                        caption = _caption_of(tar.extractfile(member).read(), suffix)
                if key is not None:
                    yield f"{shard}:{key}", image, caption
        except (tarfile.TarError, OSError, EOFError) as err:
            self._skip("corrupt or unreadable shard", f"{shard} ({type(err).__name__}: {err})")

    def record_count(self) -> int | None:
        """How many records the source lists (good or bad), for a progress bar; None for tar
        shards, which would have to be read through to count."""
        if self.kind == "folder":
            return sum(1 for p in Path(self.sources[0]).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if self.kind == "index":
            with open(self.sources[0], encoding="utf-8") as f:
                lines = sum(1 for line in f if line.strip())
            return lines - 1 if self.sources[0].endswith(".csv") else lines
        return None

    # ------------------------------------------------------------------ iteration
    def _part(self) -> tuple[int, int]:
        """(index, count) of this reader among all ranks x DataLoader workers."""
        rank, world = _rank_and_world()
        rank = self.rank if self.rank is not None else rank
        world = self.world_size if self.world_size is not None else world
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return rank * workers + worker, world * workers

    def records(self) -> Iterator[tuple[str, object, str | None]]:
        """This reader's (key, image source, caption or None), in a fixed order."""
        part, parts = self._part()
        if self.kind == "tar" and len(self.sources) >= parts:
            for shard in self.sources[part::parts]:               # whole shards per reader
                yield from self._tar_records(shard)
            return
        if self.kind == "tar":
            stream = (r for shard in self.sources for r in self._tar_records(shard))
        elif self.kind == "folder":
            stream = self._folder_records(self.sources[0])
        else:
            stream = self._index_records(self.sources[0])
        for i, record in enumerate(stream):
            if i % parts == part:
                yield record

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor, str]]:
        n = 0
        for key, source, caption in self.records():
            if self.limit is not None and n >= self.limit:
                return
            if key in self.skip_keys:
                n += 1
                continue
            if caption is None:
                self._skip("missing or empty caption", key)
                continue
            if source is None:
                self._skip("missing image", key)
                continue
            try:
                image = square_image(source if isinstance(source, bytes) else str(source), self.resolution)
            except (UnidentifiedImageError, OSError, ValueError, TypeError, Image.DecompressionBombError) as err:
                self._skip("unreadable image", f"{key} ({type(err).__name__})")
                continue
            n += 1
            yield key, image, caption


def write_shards(examples, out_dir: str | Path, per_shard: int = 1000, prefix: str = "shard",
                 image_format: str = "PNG") -> list[Path]:
    """Write (key, image [3, H, W] in [0, 1] or PIL image, caption) examples as WebDataset tar
    shards (key.png + key.txt), the layout img2dataset writes. Returns the shard paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, tar, count = [], None, 0
    ext = "jpg" if image_format.upper() == "JPEG" else image_format.lower()
    for key, image, caption in examples:
        if tar is None or count == per_shard:
            if tar is not None:
                tar.close()
            paths.append(out_dir / f"{prefix}-{len(paths):05d}.tar")
            tar, count = tarfile.open(paths[-1], "w"), 0
        if isinstance(image, torch.Tensor):
            arr = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
            image = Image.fromarray(arr)
        buf = io.BytesIO()
        image.save(buf, format=image_format)
        for name, data in ((f"{key}.{ext}", buf.getvalue()), (f"{key}.txt", caption.encode("utf-8"))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        count += 1
    if tar is not None:
        tar.close()
    return paths

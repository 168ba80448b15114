"""The emoji world: real artwork, the same Unicode concepts drawn in four open-licensed styles.

Google Noto (Apache-2.0), Twemoji (CC-BY-4.0), OpenMoji (CC-BY-SA-4.0) and Microsoft Fluent
(MIT), named, grouped and tagged by Emojibase (MIT). The images are built once from pinned
npm packages by `unclip_lib.emoji_data` (`unclip-lab data emoji`) and shipped in
`data/emoji/`: one lossless WebP sheet per style at 64 px (on white, cropped to content with
the same margin for every style); 32 px is their exact 2 x 2 mean, derived at load time;
128 px sheets are written only by the builder (not shipped).

One image's attributes::

    {"concept": "1F44D", "name": "thumbs up", "style": "fluent", "skin_tone": "dark",
     "group": "people-body", "word": None, "word_position": None}

`concept` is the Emojibase hexcode of the base emoji (skin tone removed); `skin_tone` is None
or one of SKIN_TONES; `word` is text written over ("over") or under ("under") the emoji at
render time, the word usually unrelated to the emoji, as text in web photos is. A caption
that goes with a written word transcribes it, which is what teaches a CLIP to read.

Canonical captions (`EmojiWorld.caption`) are the everyday lower-case name
("thumbs up: dark skin tone"), the style only when the dict names it ("... in the openmoji
style") and the written word ("... with the word 'phone' written on it"). Training captions
(`training_caption`) vary as web alt-text does: templates, tags, the group, the skin tone
sometimes left out, the style sometimes named.

A fixed ~10% of (concept, style) pairs (`held_out`, chosen by the builder and stored in
index.json) never appear in the "train" split, each concept keeping at least three styles in
training, so generalisation across styles can be measured (a Fluent cat face generated
having seen cats only in the other three styles).
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import threading
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .checks import check_caption, close_matches
from .images import MAX_VALUES
from .world import Batch
from .worlds import WorldWeights

STYLES = ("noto", "twemoji", "openmoji", "fluent")
STYLE_TITLES = {"noto": "Google Noto", "twemoji": "Twemoji", "openmoji": "OpenMoji", "fluent": "Microsoft Fluent"}
SKIN_TONES = ("light", "medium-light", "medium", "medium-dark", "dark")
WORD_POSITIONS = ("over", "under")
SPLITS = ("train", "held_out", "all")
SHIPPED_RESOLUTION = 64          # the sheets in data/emoji/
BUILT_RESOLUTION = 128           # what the builder renders; 64 and 32 are its exact 2x2 means
SHEET_COLUMNS = 64               # tiles per sheet row
INDEX_FILE = "index.json"
MANIFEST_FILE = "MANIFEST.json"
REBUILD_COMMAND = "unclip-lab data emoji"
ATTRIBUTE_KEYS = ("concept", "name", "style", "skin_tone", "group", "word", "word_position")


class EmojiDataError(RuntimeError):
    """The emoji world's data files are missing, corrupt or incomplete."""


def emoji_dir() -> Path:
    """Where the emoji world's files live: $UNCLIP_LAB_EMOJI_DATA, else the repository's data/emoji/."""
    env = os.environ.get("UNCLIP_LAB_EMOJI_DATA")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "data" / "emoji"


def sheet_name(style: str, resolution: int) -> str:
    """File name of one style's sheet: e.g. 'openmoji_64.webp' (OpenMoji-derived files stay separate)."""
    return f"{style}_{resolution}.webp"


def manifest_name(resolution: int) -> str:
    """MANIFEST.json pins the shipped files; the builder's 128 px sheets have their own manifest."""
    return MANIFEST_FILE if resolution == SHIPPED_RESOLUTION else f"MANIFEST-{resolution}.json"


def downsample2(tiles: np.ndarray) -> np.ndarray:
    """Exact 2 x 2 mean of uint8 images [..., H, W, C] (rounded half up): how 64 px comes from
    128 px in the builder and 32 px from 64 px at load time."""
    t = tiles.astype(np.uint16)
    s = t[..., 0::2, 0::2, :] + t[..., 1::2, 0::2, :] + t[..., 0::2, 1::2, :] + t[..., 1::2, 1::2, :]
    return ((s + 2) // 4).astype(np.uint8)


def sheet_to_tiles(sheet: np.ndarray, resolution: int, count: int) -> np.ndarray:
    """[rows*R, cols*R, 3] -> [count, R, R, 3] (row-major tiles)."""
    rows, cols = sheet.shape[0] // resolution, sheet.shape[1] // resolution
    tiles = sheet.reshape(rows, resolution, cols, resolution, 3).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(tiles.reshape(rows * cols, resolution, resolution, 3)[:count])


def tiles_to_sheet(tiles: np.ndarray, columns: int = SHEET_COLUMNS) -> np.ndarray:
    """[count, R, R, 3] -> one white-padded sheet with `columns` tiles a row."""
    n, r = len(tiles), tiles.shape[1]
    rows = -(-n // columns)
    padded = np.full((rows * columns, r, r, 3), 255, np.uint8)
    padded[:n] = tiles
    return np.ascontiguousarray(padded.reshape(rows, columns, r, r, 3).transpose(0, 2, 1, 3, 4)
                                .reshape(rows * r, columns * r, 3))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- the data files

class EmojiData:
    """The shipped files of one folder: index.json (names, tags, groups, which images each sheet
    holds, the held-out pairs, the written-word vocabulary), MANIFEST.json (sha256 of every file)
    and the sheets. Everything is read on first use and kept for the process."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._tiles: dict[tuple[str, int], np.ndarray] = {}
        self._manifests: dict[int, dict] = {}
        self.index = self._read_json(INDEX_FILE, verify=True)
        if self.index.get("format") != 1:
            raise EmojiDataError(f"{self.folder / INDEX_FILE} has format {self.index.get('format')!r}, "
                                 f"this library reads format 1; rebuild it with `{REBUILD_COMMAND}`")
        self.slots = {style: {(c, t): k for k, (c, t) in enumerate(self.index["images"][style])}
                      for style in STYLES}

    def __reduce__(self):
        # DataLoader workers (spawned, or pickled datasets) re-open the folder rather than copy
        # the decoded sheets
        return load_emoji_data, (self.folder,)

    def _hint(self) -> str:
        return (f"restore the shipped files with `git checkout -- data/emoji` or rebuild them with "
                f"`{REBUILD_COMMAND}` (needs npm and rsvg-convert)")

    def manifest(self, resolution: int = SHIPPED_RESOLUTION) -> dict:
        if resolution not in self._manifests:
            path = self.folder / manifest_name(resolution)
            if not path.exists():
                if resolution == SHIPPED_RESOLUTION:
                    raise EmojiDataError(f"{path} is missing; {self._hint()}")
                raise EmojiDataError(
                    f"{resolution} px emoji are not shipped (only {SHIPPED_RESOLUTION} px and the 32 px derived "
                    f"from it); build them with `{REBUILD_COMMAND} --resolutions {SHIPPED_RESOLUTION},{resolution}` "
                    f"(needs npm and rsvg-convert; about 20 minutes), which writes {sheet_name('noto', resolution)} "
                    f"etc. into {self.folder}")
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise EmojiDataError(f"{path} is unreadable or corrupt ({err}); {self._hint()}") from err
            if resolution != SHIPPED_RESOLUTION and manifest.get("index_sha256") != file_sha256(self.folder / INDEX_FILE):
                raise EmojiDataError(f"{path} was built for another {INDEX_FILE}; rebuild the {resolution} px sheets "
                                     f"with `{REBUILD_COMMAND} --resolutions {SHIPPED_RESOLUTION},{resolution}`")
            self._manifests[resolution] = manifest
        return self._manifests[resolution]

    def _verified_path(self, name: str, resolution: int = SHIPPED_RESOLUTION) -> Path:
        path = self.folder / name
        manifest = self.manifest(resolution)   # first: without a 128 px manifest, say how to build them
        if not path.exists():
            raise EmojiDataError(f"{path} is missing; {self._hint()}")
        pinned = manifest.get("files", {}).get(name)
        if pinned is None:
            raise EmojiDataError(f"{path} is not listed in {manifest_name(resolution)}; {self._hint()}")
        digest = file_sha256(path)
        if digest != pinned["sha256"]:
            raise EmojiDataError(f"{path} is corrupt: its sha256 {digest[:12]}... does not match "
                                 f"{manifest_name(resolution)} ({pinned['sha256'][:12]}...); {self._hint()}")
        return path

    def _read_json(self, name: str, verify: bool) -> dict:
        path = self._verified_path(name) if verify else self.folder / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise EmojiDataError(f"{path} is unreadable or corrupt ({err}); {self._hint()}") from err

    def available_resolutions(self) -> list[int]:
        out = [SHIPPED_RESOLUTION // 2, SHIPPED_RESOLUTION]
        if (self.folder / manifest_name(BUILT_RESOLUTION)).exists():
            out.append(BUILT_RESOLUTION)
        return out

    def tiles(self, style: str, resolution: int) -> np.ndarray:
        """All images of one style at 32, 64 or (if built) 128 px: uint8 [n, R, R, 3]."""
        key = (style, resolution)
        with self._lock:
            if key not in self._tiles:
                if resolution == SHIPPED_RESOLUTION // 2:
                    self._tiles[key] = downsample2(self._load_sheet(style, SHIPPED_RESOLUTION, keep=True))
                else:
                    self._tiles[key] = self._load_sheet(style, resolution, keep=False)
            return self._tiles[key]

    def _load_sheet(self, style: str, resolution: int, keep: bool) -> np.ndarray:
        if (style, resolution) in self._tiles:
            return self._tiles[(style, resolution)]
        name = sheet_name(style, resolution)
        path = self._verified_path(name, resolution)
        try:
            with Image.open(path) as im:
                sheet = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as err:
            raise EmojiDataError(f"{path} could not be decoded ({err}); {self._hint()}") from err
        count = len(self.index["images"][style])
        if sheet.shape[0] % resolution or sheet.shape[1] != SHEET_COLUMNS * resolution \
                or (sheet.shape[0] // resolution) * SHEET_COLUMNS < count:
            raise EmojiDataError(f"{path} is {sheet.shape[1]} x {sheet.shape[0]} px, which does not hold "
                                 f"{count} tiles of {resolution} px; {self._hint()}")
        tiles = sheet_to_tiles(sheet, resolution, count)
        if keep:
            self._tiles[(style, resolution)] = tiles
        return tiles


_DATA: dict[Path, EmojiData] = {}
_DATA_LOCK = threading.Lock()


def load_emoji_data(folder: str | Path | None = None) -> EmojiData:
    """The EmojiData of a folder (default: emoji_dir()), loaded once per process."""
    path = Path(folder) if folder is not None else emoji_dir()
    key = path.resolve()
    with _DATA_LOCK:
        if key not in _DATA:
            if not (path / INDEX_FILE).exists():
                raise EmojiDataError(
                    f"no emoji data in {path} ({INDEX_FILE} is missing); restore the shipped files with "
                    f"`git checkout -- data/emoji` or build them with `{REBUILD_COMMAND} --out {path}` "
                    f"(needs npm and rsvg-convert)")
            _DATA[key] = EmojiData(path)
        return _DATA[key]


# ----------------------------------------------------------------------------- written words

@lru_cache(maxsize=1)
def _font_path() -> str:
    """DejaVu Sans Bold as matplotlib ships it (a dependency), else Pillow's bundled default."""
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
        if path.exists():
            return str(path)
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        pass
    return ""


@lru_cache(maxsize=256)
def _font(px: int) -> ImageFont.ImageFont:
    path = _font_path()
    return ImageFont.truetype(path, max(px, 4)) if path else ImageFont.load_default(size=max(px, 4))


def _fitted_font(word: str, px: int, max_width: float) -> ImageFont.ImageFont:
    """The font of `px` pixels, made smaller until `word` fits in max_width."""
    def width(size: int) -> float:
        left, _, right, _ = _font(size).getbbox(word)
        return right - left

    w = width(px)
    if w > max_width:
        px = max(4, int(px * max_width / w))
        while px > 4 and width(px) > max_width:
            px -= 1
    return _font(px)


def _resample(tile: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(tile).resize((size, size), Image.LANCZOS))


def draw_word(image: np.ndarray, word: str, position: str, source: np.ndarray | None = None,
              scale: float = 1.0, contrast: float = 1.0) -> np.ndarray:
    """Write `word` on an emoji image (uint8 [R, R, 3], white background).

    "over": on a white label across the lower part of the emoji (a sticker on an apple);
    "under": the emoji shrunk into the upper 70% (from `source`, a sharper copy, when given)
    and the word written below it. Drawn at 4x (2x from 128 px up) and box-reduced, so the
    same word gives the same pixels. `scale` multiplies the letters' height (long words are
    shrunk to fit the width whatever the scale); `contrast` runs from 0 (white ink, only the
    label shows) to 1 (the near-black ink of the data). The defaults draw the training images."""
    if position not in WORD_POSITIONS:
        raise ValueError(f"word_position must be one of {list(WORD_POSITIONS)}, got {position!r}"
                         f"{close_matches(position, WORD_POSITIONS)}")
    if not 0.2 <= scale <= 1.5:
        raise ValueError(f"scale must lie in [0.2, 1.5] (1: the letters of the training images), got {scale!r}")
    if not 0.0 <= contrast <= 1.0:
        raise ValueError(f"contrast must lie in [0, 1] (0: invisible ink, 1: the data's), got {contrast!r}")
    r = image.shape[0]
    ss = 4 if r <= 64 else 2
    side = r * ss
    out = image.astype(np.float32)
    if position == "under":
        s = int(round(0.7 * r))
        small = _resample(source if source is not None else image, s).astype(np.float32)
        out = np.full_like(out, 255.0)
        x0, y0 = (r - s) // 2, int(round(0.02 * r))
        out[y0:y0 + s, x0:x0 + s] = small
        font = _fitted_font(word, int(round(0.26 * scale * side)), 0.96 * side)
        centre = (side / 2, 0.86 * side)
        label = None
    else:
        font = _fitted_font(word, int(round(0.27 * scale * side)), 0.84 * side)
        left, top, right, bottom = font.getbbox(word, anchor="mm")
        cy = 0.68 * side
        pad_x, pad_y = 0.05 * side, 0.035 * side
        box = (side / 2 + left - pad_x, cy + top - pad_y, side / 2 + right + pad_x, cy + bottom + pad_y)
        label = Image.new("L", (side, side), 0)
        ImageDraw.Draw(label).rounded_rectangle(box, radius=0.06 * side, fill=255, outline=None)
        centre = (side / 2, cy)
    ink = Image.new("L", (side, side), 0)
    ImageDraw.Draw(ink).text(centre, word, fill=255, font=font, anchor="mm")
    if label is not None:
        a = np.asarray(label.reduce(ss), np.float32)[..., None] / 255
        out = out * (1 - a) + 255.0 * a
    a = np.asarray(ink.reduce(ss), np.float32)[..., None] / 255
    ink_level = 255.0 - 235.0 * contrast     # 20 at full contrast, as in the data
    out = out * (1 - a) + ink_level * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- the world

def _check_keys(attrs) -> str | None:
    """Refuse anything but an attribute dict with known keys; return its concept (or name) key."""
    if not isinstance(attrs, dict):
        raise ValueError(f"an emoji's attributes must be a dict, got {type(attrs).__name__}")
    unknown = set(attrs) - set(ATTRIBUTE_KEYS)
    if unknown:
        key = sorted(unknown)[0]
        raise ValueError(f"unknown attribute {key!r}{close_matches(key, ATTRIBUTE_KEYS)} (keys: {list(ATTRIBUTE_KEYS)})")
    return attrs.get("concept") or attrs.get("name")


class EmojiWorld:
    """Emoji in four styles, captioned by their everyday names. Same seed, same pixels and captions.

    >>> world = EmojiWorld(seed=0)
    >>> batch = world.sample(16)            # images [16, 3, 64, 64] in [0, 1]
    >>> world.caption({"concept": "1F34E"})
    'red apple'
    """

    styles = STYLES
    skin_tones = SKIN_TONES
    decoder_preset = "emoji32"      # the UNet of its shipped decoder (decoder.DECODER_PRESETS)
    # 32 -> 64: the shapes stage fine-tuned on emoji (at the pipeline's 2 steps the shapes stage itself
    # falls below bicubic on emoji, this one is 3 dB above it: README, "The emoji world (models)");
    # 64 -> 128: the shapes stage (128 px emoji are a developer build, so it is not fine-tuned here)
    weights = WorldWeights(clip="emoji", evaluator="emoji", decoder="emoji", upsamplers=("emoji_up64", "up128"),
                           priors={"diffusion": "emoji_diffusion", "autoregressive": "emoji_autoregressive"})

    def __init__(self, seed: int = 0, resolution: int = SHIPPED_RESOLUTION, data_dir: str | Path | None = None):
        self.seed = seed
        self.resolution = resolution
        self._rng = np.random.default_rng(seed)
        self.data = load_emoji_data(data_dir)
        index = self.data.index
        self.concepts: dict[str, dict] = {c["concept"]: c for c in index["concepts"]}
        self.groups: dict[str, str] = dict(index["groups"])
        self.words: list[str] = list(index["words"])
        self.held_out = frozenset((c, s) for c, s in index["held_out"])
        self._names = {c["name"]: h for h, c in self.concepts.items()}
        self._skins = {h: {k["tone"]: k for k in c.get("skins", [])} for h, c in self.concepts.items()}
        self._pairs: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
        self._tones: dict[tuple[str, str], list[str]] = {}
        for style in STYLES:
            for concept, tone in index["images"][style]:
                if tone is None:
                    pair = (concept, style)
                    self._pairs["all"].append(pair)
                    self._pairs["held_out" if pair in self.held_out else "train"].append(pair)
                else:
                    self._tones.setdefault((concept, style), []).append(tone)

    # -- names and lookups
    @property
    def vocabulary(self) -> dict[str, list]:
        return {"concept": list(self.concepts), "style": list(STYLES), "skin_tone": list(SKIN_TONES),
                "group": list(self.groups), "word": list(self.words)}

    def concept(self, key: str) -> str:
        """The hexcode of a concept given as hexcode ('1F34E', 'U+1F34E', '1f34e'), emoji ('🍎')
        or everyday name ('red apple'); a clear error with close matches otherwise."""
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"concept must be a non-empty string (hexcode, emoji or name), got {key!r}")
        k = key.strip()
        hexcode = k.upper().removeprefix("U+").replace(" ", "-")
        if hexcode in self.concepts:
            return hexcode
        if k.lower() in self._names:
            return self._names[k.lower()]
        emoji_hex = "-".join(f"{ord(ch):X}" for ch in k if ord(ch) != 0xFE0F)
        if emoji_hex in self.concepts:
            return emoji_hex
        for h, c in self.concepts.items():  # a skin-tone variant's hexcode or name
            for skin in c.get("skins", []):
                if hexcode == skin["hexcode"] or emoji_hex == skin["hexcode"] or k.lower() == skin["name"]:
                    return h
        names = difflib.get_close_matches(k.lower(), list(self._names), n=5, cutoff=0.6)
        codes = difflib.get_close_matches(hexcode, list(self.concepts), n=3, cutoff=0.8)
        close = [f"{n!r} ({self._names[n]})" for n in names] + [f"{c!r} ({self.concepts[c]['name']})" for c in codes]
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown emoji concept {key!r}{hint} ({len(self.concepts)} concepts: "
                         f"see world.vocabulary['concept'] or world.concepts[...]['name'])")

    @cached_property
    def _name_pattern(self) -> re.Pattern:
        """Any concept's name (or a skin-tone variant's), as whole words; longest first."""
        names = set(self._names) | {k["name"] for c in self.concepts.values() for k in c.get("skins", [])}
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        return re.compile(rf"(?<![\w])(?:{alternatives})(?![\w])")

    def check_caption(self, caption, name: str = "caption") -> str:
        """The caption, if it names an emoji of this world ('red apple', 'thumbs up: dark skin
        tone', 'cat face in the fluent style') and only styles and skin tones that exist;
        otherwise a clear error with close names. A text diff between captions that name no
        concept points nowhere in particular."""
        caption = check_caption(caption, name)
        text = caption.lower()
        for word in re.findall(r"([\w-]+),? style\b", text):
            if word not in STYLES:
                titled = [k for k, title in STYLE_TITLES.items() if word in title.lower().split()]
                hint = f"; did you mean {titled[0]!r}?" if titled else close_matches(word, STYLES)
                raise ValueError(f"{name} {caption!r} names the style {word!r}, which this world does not have"
                                 f"{hint} (styles: {', '.join(STYLES)})")
        for tone in re.findall(r"([\w-]+) skin tone", text):
            if tone not in SKIN_TONES:
                raise ValueError(f"{name} {caption!r} names the skin tone {tone!r}{close_matches(tone, SKIN_TONES)}"
                                 f" (skin tones: {', '.join(SKIN_TONES)})")
        if not self._name_pattern.search(text):
            core = re.sub(r"\b(an? |the |emoji:? ?|icon|of )|( in the [\w-]+ style|,? [\w-]+ style)|"
                          r"( with the word .*| labell?ed .*| and the text .*)", " ", text)
            core = " ".join(core.split())
            close = difflib.get_close_matches(core, list(self._names), n=5, cutoff=0.5) if core else []
            words = [w for w in re.findall(r"[a-z]{3,}", core)]
            close += [n for n in sorted(self._names, key=len) if any(w in n.split() for w in words)][:5 - len(close)]
            hint = f"; close names: {', '.join(map(repr, dict.fromkeys(close)))}" if close else ""
            raise ValueError(f"{name} {caption!r} names no emoji of this world{hint} ({len(self.concepts)} concepts:"
                             " world.vocabulary['concept'], world.name(concept))")
        return caption

    @staticmethod
    def check_style(style: str) -> str:
        if style not in STYLES:
            raise ValueError(f"unknown emoji style {style!r}{close_matches(style, STYLES)} (styles: {list(STYLES)})")
        return style

    @staticmethod
    def check_skin_tone(tone) -> str | None:
        if tone is not None and tone not in SKIN_TONES:
            raise ValueError(f"unknown skin tone {tone!r}{close_matches(tone, SKIN_TONES)} "
                             f"(skin tones: None or one of {list(SKIN_TONES)})")
        return tone

    def name(self, concept: str, skin_tone: str | None = None) -> str:
        """The everyday name: 'thumbs up', 'thumbs up: dark skin tone'."""
        h = self.concept(concept)
        if skin_tone is None:
            return self.concepts[h]["name"]
        self.check_skin_tone(skin_tone)
        skin = self._skins[h].get(skin_tone)
        return skin["name"] if skin else f"{self.concepts[h]['name']}: {skin_tone} skin tone"

    def styles_of(self, concept: str, skin_tone: str | None = None) -> list[str]:
        """The styles that draw this concept (with this skin tone)."""
        h = self.concept(concept)
        if skin_tone is None:
            return list(self.concepts[h]["styles"])
        self.check_skin_tone(skin_tone)
        skin = self._skins[h].get(skin_tone)
        return list(skin["styles"]) if skin else []

    def tones_of(self, concept: str, style: str) -> list[str]:
        """The skin tones this (concept, style) pair is drawn in (empty for most emoji)."""
        return list(self._tones.get((self.concept(concept), self.check_style(style)), []))

    def attributes(self, concept: str, style: str | None = None, skin_tone: str | None = None,
                   word: str | None = None, word_position: str | None = None) -> dict:
        """The full attribute dict of one image (style defaults to the first that draws it)."""
        return self._complete({"concept": concept, "style": style, "skin_tone": skin_tone, "word": word,
                               "word_position": word_position})

    def _complete(self, attrs: dict) -> dict:
        """Check and fill a (partial) dict so it names exactly one image."""
        key = _check_keys(attrs)
        if key is None:
            raise ValueError("an emoji needs its 'concept' (hexcode such as '1F34E', the emoji, or its name)")
        h = self.concept(key)
        tone = self.check_skin_tone(attrs.get("skin_tone"))
        available = self.styles_of(h, tone)
        if tone is not None and not available:
            raise ValueError(f"{self.concepts[h]['name']!r} has no skin-tone variants in this world"
                             if not self._skins[h] else
                             f"{self.concepts[h]['name']!r} has no {tone} skin-tone image; available: "
                             f"{sorted(self._skins[h])}")
        style = attrs.get("style")
        if style is None:
            style = available[0]
        self.check_style(style)
        if style not in available:
            what = self.name(h, tone)
            raise ValueError(f"{what!r} is not drawn in the {style} style here; styles: {available}")
        word, position = attrs.get("word"), attrs.get("word_position")
        if word is not None:
            if not isinstance(word, str) or not word.strip():
                raise ValueError(f"word must be None or a non-empty string, got {word!r}")
            position = position or "over"
            if position not in WORD_POSITIONS:
                raise ValueError(f"word_position must be one of {list(WORD_POSITIONS)}, got {position!r}"
                                 f"{close_matches(position, WORD_POSITIONS)}")
        else:
            position = None
        return {"concept": h, "name": self.concepts[h]["name"], "style": style, "skin_tone": tone,
                "group": self.concepts[h]["group"], "word": word, "word_position": position}

    # -- splits
    def pairs(self, split: str = "all") -> list[tuple[str, str]]:
        """The (concept, style) pairs of a split, each drawn in its base form (and maybe skin tones)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}{close_matches(split, SPLITS)}")
        return list(self._pairs[split])

    def combinations(self, split: str = "all") -> list[dict]:
        """Every image of a split (base emoji and skin-tone variants, no word), as attribute dicts."""
        out = []
        for concept, style in self.pairs(split):
            for tone in [None] + self._tones.get((concept, style), []):
                out.append(self._complete({"concept": concept, "style": style, "skin_tone": tone}))
        return out

    def counts(self) -> dict:
        """How many concepts, pairs, images and held-out pairs this world has."""
        skin_images = sum(len(v) for v in self._tones.values())
        variants = {(c, t) for (c, _), tones in self._tones.items() for t in tones}
        return {"concepts": len(self.concepts),
                "concepts_in_all_styles": sum(len(c["styles"]) == len(STYLES) for c in self.concepts.values()),
                "skin_tone_variants": len(variants),
                "pairs": len(self._pairs["all"]),
                "held_out_pairs": len(self._pairs["held_out"]),
                "images": len(self._pairs["all"]) + skin_images,
                "held_out_images": sum(1 + len(self._tones.get(p, [])) for p in self._pairs["held_out"])}

    # -- drawing images
    def draw_image(self, rng: np.random.Generator, split: str = "train", word_prob: float = 0.0,
                   skin_tone_prob: float = 0.5, own_word_prob: float = 0.25) -> dict:
        """One random image's attributes: a (concept, style) pair of the split, uniformly; then a
        skin tone (with probability skin_tone_prob when the pair has any); then, with
        probability word_prob, a written word (the concept's own word with probability
        own_word_prob when it has one, else any other word of the vocabulary) over or under it."""
        pairs = self._pairs[split] if split in self._pairs else self.pairs(split)
        concept, style = pairs[rng.integers(len(pairs))]
        tones = self._tones.get((concept, style), [])
        tone = tones[rng.integers(len(tones))] if tones and rng.random() < skin_tone_prob else None
        word = position = None
        if word_prob > 0 and rng.random() < word_prob:
            own = self.concepts[concept].get("word")
            if own and rng.random() < own_word_prob:
                word = own
            else:
                word = self.words[rng.integers(len(self.words))]
                if word == own:  # "unrelated" means another word
                    word = self.words[(self.words.index(word) + 1 + rng.integers(len(self.words) - 1))
                                      % len(self.words)]
            position = WORD_POSITIONS[rng.integers(2)]
        return {"concept": concept, "name": self.concepts[concept]["name"], "style": style, "skin_tone": tone,
                "group": self.concepts[concept]["group"], "word": word, "word_position": position}

    # -- what trainers and probes ask of a world (unclip_lib.worlds)
    def draw_training(self, rng: np.random.Generator, split: str = "train", word_prob: float = 0.25,
                      multi_share: float = 0.0) -> tuple[dict, dict]:
        """One random training image: (attributes, {}) (an emoji image is one object: no multi_share)."""
        return self.draw_image(rng, split, word_prob), {}

    def render_drawn(self, attrs: dict, details: dict, resolution: int) -> np.ndarray:
        """A drawn image as uint8 [R, R, 3]."""
        return self.render_array(attrs, resolution)

    def sibling(self, attrs: dict, rng: np.random.Generator, split: str = "train",
                kinds: tuple[str, ...] = ("style", "word", "skin_tone")) -> tuple[dict, str]:
        """Another image of the same concept differing in one attribute: (attributes, which),
        which being one of `kinds` ("style", "word", "skin_tone") this image can vary in within
        the split, drawn uniformly; "word" when it can vary in none of them."""
        concept, style, tone = attrs["concept"], attrs["style"], attrs["skin_tone"]
        allowed = set(self._pairs[split])
        styles = [s for s in STYLES if s != style and (concept, s) in allowed
                  and (tone is None or tone in self._tones.get((concept, s), []))]
        tones = [t for t in [None] + self._tones.get((concept, style), []) if t != tone]
        possible = [k for k, ok in (("style", styles), ("word", True), ("skin_tone", tones)) if ok and k in kinds]
        possible = possible or ["word"]
        which = possible[rng.integers(len(possible))]
        out = dict(attrs)
        if which == "style":
            out["style"] = styles[rng.integers(len(styles))]
        elif which == "skin_tone":
            out["skin_tone"] = tones[rng.integers(len(tones))]
        else:
            out["word"] = self.words[rng.integers(len(self.words))]
            while out["word"] == attrs["word"]:
                out["word"] = self.words[rng.integers(len(self.words))]
            out["word_position"] = attrs["word_position"] or WORD_POSITIONS[rng.integers(2)]
        return out, which

    # CLIP batch recipes (`clip_batch`'s shares), the first the default. "pairs" made the first
    # 3,000 steps of the shipped CLIP (it saw style, read 0% of words), "reading" the rest.
    clip_recipes = {
        "reading": {"sibling_share": 0.375, "reading_share": 0.25, "sibling_kinds": ("style", "skin_tone")},
        "pairs": {"sibling_share": 0.5, "reading_share": 0.0, "sibling_kinds": ("style", "word", "skin_tone")},
    }

    def clip_batch(self, seed: int, step: int, batch_size: int, resolution: int, recipe: str = "reading",
                   group_size: int = 8):
        """CLIP training batch of step s: (images [B, 3, R, R], captions), a pure function of
        (seed, step, recipe); `recipe` names the shares of `clip_recipes`.

        In a batch of random emoji the concept alone tells every pair apart, so the contrastive
        loss gives no reason to see style or to read. Two kinds of hard negatives do:
        - reading groups (reading_share of the batch): one emoji written with `group_size`
          different words at the same place, captions that differ only by the word, so matching
          them means reading (pairs alone read no word of 740 after 3,000 steps: README);
        - sibling pairs (sibling_share): an image and another of the same concept in another
          style or skin tone (or with another word when it has neither), both captions saying it.
        The rest are independent images, a quarter of them with a written word."""
        if recipe not in self.clip_recipes:
            from .checks import close_matches

            raise ValueError(f"unknown CLIP batch recipe {recipe!r}{close_matches(recipe, self.clip_recipes)}; "
                             f"the emoji world's: {list(self.clip_recipes)}")
        shares = self.clip_recipes[recipe]
        sibling_share, reading_share = shares["sibling_share"], shares["reading_share"]
        rng = np.random.default_rng([seed, step, 5])
        groups = int(batch_size * reading_share) // group_size
        pairs = int(batch_size * sibling_share) // 2
        items: list[tuple[dict, str]] = []
        for _ in range(batch_size - 2 * pairs - groups * group_size):
            a = self.draw_image(rng, "train", word_prob=0.25)
            items.append((a, self.training_caption(a, rng)))
        for _ in range(groups):
            a = self.draw_image(rng, "train")
            position = WORD_POSITIONS[rng.integers(len(WORD_POSITIONS))]
            template = rng.integers(1 << 30)   # one caption template for the group: only the word differs
            for j in rng.choice(len(self.words), size=group_size, replace=False):
                x = {**a, "word": self.words[j], "word_position": position}
                items.append((x, self.training_caption(x, np.random.default_rng(template))))
        for _ in range(pairs):
            a = self.draw_image(rng, "train", word_prob=0.25)
            b, which = self.sibling(a, rng, kinds=shares["sibling_kinds"])
            if which == "word" and not a["word"]:   # a pair told apart by its words: both carry one
                a = {**a, "word": self.words[rng.integers(len(self.words))], "word_position": b["word_position"]}
                while a["word"] == b["word"]:
                    a["word"] = self.words[rng.integers(len(self.words))]
            for x in (a, b):
                items.append((x, self.training_caption(x, rng, name_style=which == "style",
                                                       name_tone=which == "skin_tone")))
        images = np.stack([self.render_array(a, resolution) for a, _ in items])
        return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255), [c for _, c in items]

    def dataset(self, seed: int, resolution: int, length: int = 1_000_000_000) -> "EmojiDataset":
        return EmojiDataset(seed=seed, length=length, resolution=resolution, data_dir=self.data.folder)

    def clip_report(self, clip, n: int = 300, seed: int = 10_000) -> dict:
        """The emoji CLIP's zero-shot figures (emoji_eval.clip_report)."""
        from .emoji_eval import clip_report

        return clip_report(clip, self, n=n, seed=seed)

    def validation_images(self, n: int, resolution: int):
        """Fresh images of training pairs (no word) of this world's seed, to reconstruct in validations."""
        return self.sample(n, resolution=resolution, split="train", seed=0)

    @staticmethod
    def reconstruction_report(evaluator, generated, batch) -> dict:
        """The evaluator's reading of generated images against the true attributes: concept
        top-1 / top-5, style, skin tone."""
        from .emoji_eval import emoji_accuracy

        acc = emoji_accuracy(evaluator.predict(generated), batch.attributes)
        return {k: round(acc[k], 3) for k in ("concept_top1", "concept_top5", "style", "skin_tone")}

    def evaluator_recipe(self, validate: int = 500):
        """How the emoji evaluator trains and is checked (emoji_eval.evaluator_recipe)."""
        from .emoji_eval import evaluator_recipe

        return evaluator_recipe(self, validate)

    def sample(self, n: int, resolution: int | None = None, split: str = "train", word_prob: float = 0.0,
               seed: int | None = None, caption_style: str = "canonical", skin_tone_prob: float = 0.5) -> Batch:
        """n random images. images: [n, 3, R, R] in [0, 1].

        split: "train" (no held-out (concept, style) pair), "held_out" (only those) or "all".
        seed=None continues this world's stream; an int gives a fixed batch.
        caption_style: "canonical" (the name, and the word when there is one) or "varied".
        """
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive number of images, got {n!r}")
        res = self._check_resolution(self.resolution if resolution is None else resolution)
        if n * 3 * res * res > MAX_VALUES:
            raise ValueError(f"{n} images of {res} x {res} would take {n * 3 * res * res * 4 / 2**30:.0f} GiB as "
                             f"float32; sample at most {MAX_VALUES // (3 * res * res)} at a time")
        if caption_style not in ("canonical", "varied"):
            raise ValueError(f"caption_style must be 'canonical' or 'varied', got {caption_style!r}")
        if not 0 <= word_prob <= 1 or not 0 <= skin_tone_prob <= 1:
            raise ValueError(f"word_prob and skin_tone_prob must be in [0, 1], got {word_prob!r}, {skin_tone_prob!r}")
        self.pairs(split)
        rng = self._rng if seed is None else np.random.default_rng([self.seed, seed])
        attrs = [self.draw_image(rng, split, word_prob, skin_tone_prob) for _ in range(n)]
        captions = [self.caption(a) if caption_style == "canonical" else self.training_caption(a, rng)
                    for a in attrs]
        return Batch(self.render(attrs, res), captions, attrs, [{} for _ in attrs])

    def _check_resolution(self, resolution) -> int:
        if not isinstance(resolution, (int, np.integer)) or isinstance(resolution, bool) or resolution < 8:
            raise ValueError(f"resolution must be an integer of at least 8 pixels, got {resolution!r}")
        return int(resolution)

    def _tile(self, concept: str, style: str, tone: str | None, resolution: int) -> tuple[np.ndarray, np.ndarray]:
        """(image at `resolution`, a sharper copy to shrink from) as uint8 [R, R, 3]. Up to 64 px
        both come from the shipped files alone (so they never depend on whether the 128 px
        sheets were built); above 64 px from the built 128 px sheets."""
        slot = self.data.slots[style][(concept, tone)]
        if resolution > BUILT_RESOLUTION:
            raise ValueError(f"emoji images go up to {BUILT_RESOLUTION} px (built; {SHIPPED_RESOLUTION} px "
                             f"shipped), got resolution {resolution}")
        source_res = next(r for r in (SHIPPED_RESOLUTION // 2, SHIPPED_RESOLUTION, BUILT_RESOLUTION) if r >= resolution)
        source = self.data.tiles(style, source_res)[slot]
        image = source if source_res == resolution else _resample(source, resolution)
        sharp_res = max(source_res, SHIPPED_RESOLUTION)
        return image, (source if sharp_res == source_res else self.data.tiles(style, sharp_res)[slot])

    def render_array(self, attrs: dict, resolution: int | None = None) -> np.ndarray:
        """One image of exactly these attributes: uint8 [R, R, 3] on white."""
        res = self._check_resolution(self.resolution if resolution is None else resolution)
        a = self._complete(attrs)
        image, sharper = self._tile(a["concept"], a["style"], a["skin_tone"], res)
        if a["word"]:
            image = draw_word(image, a["word"], a["word_position"], source=sharper)
        return np.array(image)

    def render(self, attrs_list: list[dict] | dict, resolution: int | None = None) -> torch.Tensor:
        """Images of exactly these emoji: [N, 3, R, R] in [0, 1] (composited on white, as the data are)."""
        if isinstance(attrs_list, dict):
            attrs_list = [attrs_list]
        if not attrs_list:
            raise ValueError("render: got an empty list of emoji; pass at least one attribute dict")
        res = self._check_resolution(self.resolution if resolution is None else resolution)
        if len(attrs_list) * 3 * res * res > MAX_VALUES:
            raise ValueError(f"render: {len(attrs_list)} images of {res} px are too many at once; split the list")
        arrays = np.stack([self.render_array(a, res) for a in attrs_list])
        return torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div_(255)

    # -- captions
    def caption(self, attrs: dict) -> str:
        """The canonical caption; a partial dict mentions only its keys.

        {"concept": "1F34E"} -> 'red apple'; with "skin_tone": "dark" on thumbs up ->
        'thumbs up: dark skin tone'; "style": "openmoji" adds ' in the openmoji style';
        "word": "phone" adds " with the word 'phone' written on it" ('under it' when
        word_position is "under")."""
        key = _check_keys(attrs)
        tone = self.check_skin_tone(attrs.get("skin_tone"))
        if key is not None:
            text = self.name(key, tone)
        else:
            text = "an emoji"
            if tone:
                text += f" with {tone} skin tone"
            group = attrs.get("group")
            if group is not None:
                if group not in self.groups:
                    raise ValueError(f"unknown emoji group {group!r}{close_matches(group, self.groups)} "
                                     f"(groups: {list(self.groups)})")
                text += f" from the {self.groups[group]} group"
        if attrs.get("style") is not None:
            text += f" in the {self.check_style(attrs['style'])} style"
        word = attrs.get("word")
        if word:
            where = "under" if attrs.get("word_position") == "under" else "on"
            text += f" with the word '{word}' written {where} it"
        return text

    def training_caption(self, attrs: dict, rng: np.random.Generator, name_style: bool = False,
                         name_tone: bool = False) -> str:
        """A varied training caption (template, tags, group, style and skin tone drawn from rng);
        a written word is always transcribed. name_style / name_tone: always say the style /
        the skin tone (as `clip_batch`'s sibling pairs need)."""
        a = self._complete(attrs)
        concept, tone, style = a["concept"], a["skin_tone"], a["style"]
        info = self.concepts[concept]
        base = info["name"]
        if tone is None:
            name = base
        else:
            r = rng.random() * (0.8 if name_tone else 1.0)
            name = self.name(concept, tone) if r < 0.55 else f"{base} with {tone} skin tone" if r < 0.8 else base
        template = rng.integers(6)
        text = [name, f"{name} emoji", f"the {name} emoji", f"an emoji of {name}", f"{name} icon",
                f"emoji: {name}"][template]
        if name_style or rng.random() < 0.2:
            kind = rng.integers(3)
            text = [f"{text} in the {style} style", f"{text}, {style} style", f"{style} {text}"][kind]
        if rng.random() < 0.15:
            text += f" ({self.groups[info['group']]})"
        tags = [t for t in info.get("tags", []) if t not in text]
        if tags and rng.random() < 0.3:
            k = 1 + rng.integers(min(3, len(tags)))
            chosen = [tags[i] for i in sorted(rng.choice(len(tags), size=k, replace=False))]
            text += ", " + ", ".join(chosen)
        word = a["word"]
        if word:
            where = "under" if a["word_position"] == "under" else "on"
            kind = rng.integers(4)
            text = [f"{text} with the word '{word}' written {where} it", f"{text} labeled '{word}'",
                    f"{text} and the text '{word}'", f"{text} with '{word}' written {where} it"][kind]
        return text


class EmojiDataset(torch.utils.data.Dataset):
    """A map-style dataset of captioned emoji; item i is a pure function of (seed, i), so any
    worker, any epoch and any resumed run sees the same data.

    Item: (image [3, R, R] in [0, 1], caption). `attributes(i)` gives the truth. The default
    length is the number of images in the split; items are drawn as `EmojiWorld.draw_image`
    does (pair uniformly, then skin tone, then maybe a written word).
    """

    def __init__(self, seed: int = 0, length: int | None = None, resolution: int = SHIPPED_RESOLUTION,
                 word_prob: float = 0.25, split: str = "train", caption_style: str = "varied",
                 skin_tone_prob: float = 0.5, data_dir: str | Path | None = None):
        self.world = EmojiWorld(seed=seed, resolution=resolution, data_dir=data_dir)
        self.world.pairs(split)
        if caption_style not in ("canonical", "varied"):
            raise ValueError(f"caption_style must be 'canonical' or 'varied', got {caption_style!r}")
        self.seed, self.resolution, self.split = seed, self.world._check_resolution(resolution), split
        self.word_prob, self.skin_tone_prob, self.caption_style = word_prob, skin_tone_prob, caption_style
        if length is None:
            length = sum(1 + len(self.world._tones.get(p, [])) for p in self.world.pairs(split))
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def _draw(self, i: int) -> tuple[dict, np.random.Generator]:
        rng = np.random.default_rng([self.seed, i])
        return self.world.draw_image(rng, self.split, self.word_prob, self.skin_tone_prob), rng

    def attributes(self, i: int) -> dict:
        return self._draw(i)[0]

    def __getitem__(self, i: int):
        if not 0 <= i < self.length:
            raise IndexError(i)
        attrs, rng = self._draw(i)
        caption = (self.world.training_caption(attrs, rng) if self.caption_style == "varied"
                   else self.world.caption(attrs))
        image = torch.from_numpy(self.world.render_array(attrs, self.resolution)).permute(2, 0, 1).float() / 255
        return image, caption

"""The miniature world: procedurally rendered, captioned scenes with exact ground truth.

Every image is drawn from a small attribute dict, so every claim about a generated
image can be checked against the truth (see `evaluate.py`).

A one-object scene::

    {"shape": "circle", "color": "red", "size": "small", "position": "left",
     "background": "white", "word": None}

A two-object scene holds its objects in a list; scene keys stay at the top::

    {"objects": [{"shape": ..., "color": ..., "size": ..., "position": ...}, {...}],
     "background": "beige", "word": None}

`word` is text written on the image (None for none). A typographic attack is simply
`render` with a word that names the wrong shape or colour.

Canonical captions (`ShapesWorld.caption`) name shape, colour, size, position and the
written word; never the background tint, which is left as non-essential detail.
Training captions vary the template and sometimes omit attributes, as web alt-text does.

Shape x colour pairs in `HELD_OUT` never appear in the "train" split, so compositional
generalisation can be measured on them.
"""
from __future__ import annotations

import difflib
import itertools
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .checks import check_caption, check_int, check_number
from .images import MAX_VALUES
from .worlds import WorldWeights

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLORS = {
    "red": (220, 40, 40),
    "orange": (245, 140, 25),
    "yellow": (235, 205, 30),
    "green": (40, 160, 60),
    "blue": (40, 75, 215),
    "purple": (130, 55, 180),
    "pink": (240, 120, 185),
    "black": (30, 30, 30),
}
SIZES = {"small": 0.13, "large": 0.22}  # radius as a fraction of the image side
POSITIONS = {
    "left": (0.27, 0.5),
    "right": (0.73, 0.5),
    "top": (0.5, 0.27),
    "bottom": (0.5, 0.73),
    "center": (0.5, 0.5),
}
BACKGROUNDS = {
    "white": (246, 246, 243),
    "beige": (238, 226, 196),
    "gray": (198, 198, 198),
    "pale blue": (205, 224, 242),
}
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
# Shape x colour pairs that never appear in training data (each shape once).
HELD_OUT = frozenset({
    ("circle", "green"),
    ("square", "yellow"),
    ("triangle", "blue"),
    ("star", "red"),
    ("cross", "purple"),
    ("diamond", "orange"),
})
# Two objects always sit on opposite sides, so they never overlap.
PAIR_POSITIONS = (("left", "right"), ("right", "left"), ("top", "bottom"), ("bottom", "top"))
OBJECT_KEYS = ("shape", "color", "size", "position")
WORDS = SHAPES + tuple(COLORS)  # words written on images name a shape or a colour
SPLITS = ("train", "held_out", "all")


@dataclass
class Batch:
    """A batch of scenes. images: [N, 3, H, W] float in [0, 1]."""

    images: torch.Tensor
    captions: list[str]
    attributes: list[dict]
    details: list[dict] = field(default_factory=list)  # jitter, to re-render exactly

    def __len__(self) -> int:
        return len(self.captions)


# ----------------------------------------------------------------------------- captions

def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _object_phrase(obj: dict, size_first: bool = True) -> str:
    """'a small red triangle on the left'; missing keys are simply not mentioned."""
    words = [obj[k] for k in ("size", "color") if obj.get(k)]
    noun = obj.get("shape") or "shape"
    phrase = " ".join(words + [noun])
    phrase = f"{_article(phrase)} {phrase}"
    if obj.get("position"):
        phrase += " " + POSITION_PHRASES[obj["position"]]
    return phrase


def canonical_caption(attrs: dict) -> str:
    """The canonical caption of a scene; a partial dict mentions only its keys."""
    for obj in attrs.get("objects", [attrs]):
        for key, values in (("shape", SHAPES), ("color", COLORS), ("size", SIZES), ("position", POSITIONS)):
            if obj.get(key) is not None and obj[key] not in values:
                raise ValueError(f"{key} must be one of {list(values)}, got {obj[key]!r}")
    if "objects" in attrs:
        parts = [_object_phrase(o) for o in attrs["objects"]]
        n = len(parts)
        text = f"{['no', 'one', 'two', 'three'][min(n, 3)]} shapes: " + " and ".join(parts)
    else:
        text = _object_phrase(attrs)
    if attrs.get("word"):
        text += f" with the word '{attrs['word']}' written on it"
    return text


def _random_caption(attrs: dict, rng: np.random.Generator) -> str:
    """A training caption: varied template, attributes sometimes left out."""

    def thin(obj: dict) -> dict:
        obj = dict(obj)
        for key, p_drop in (("size", 0.15), ("position", 0.15), ("color", 0.04), ("shape", 0.04)):
            if rng.random() < p_drop:
                obj.pop(key, None)
        return obj

    if "objects" in attrs:
        objs = [thin({k: o[k] for k in OBJECT_KEYS}) for o in attrs["objects"]]
        style = rng.integers(3)
        if style == 0:
            text = "two shapes: " + " and ".join(_object_phrase(o) for o in objs)
        elif style == 1:
            text = " and ".join(_object_phrase(o) for o in objs)
        else:
            text = "a picture of " + " and ".join(_object_phrase(o) for o in objs)
    else:
        obj = thin({k: attrs[k] for k in OBJECT_KEYS})
        style = rng.integers(5)
        base = _object_phrase({k: v for k, v in obj.items() if k != "position"})
        pos = POSITION_PHRASES.get(obj.get("position"), "")
        if style == 0:
            text = _object_phrase(obj)
        elif style == 1:
            text = f"a picture of {_object_phrase(obj)}"
        elif style == 2:
            text = f"{pos}, {base}" if pos else base
        elif style == 3:
            text = f"there is {base} {pos}".strip()
        else:
            text = f"an image showing {_object_phrase(obj)}"
    word = attrs.get("word")
    # Web captions often ignore text in the photo: mention the word only half the time.
    if word and rng.random() < 0.5:
        style = rng.integers(3)
        if style == 0:
            text += f" with the word '{word}' written on it"
        elif style == 1:
            text += f" and the text '{word}'"
        else:
            text += f", labeled '{word}'"
    if rng.random() < 0.15:
        text += f" on a {attrs['background']} background"
    return text


# ----------------------------------------------------------------------------- geometry

def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of a shape of 'radius' r centred at (cx, cy), in pixels."""
    if shape == "square":
        h = 0.82 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.8 * r, cy), (cx, cy + r), (cx - 0.8 * r, cy)]
    if shape == "triangle":
        cy += 0.18 * r  # centre the bounding box rather than the centroid
        return [(cx + r * math.cos(a), cy - r * math.sin(a))
                for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3)]
    if shape == "star":
        cy += 0.05 * r
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else 0.45 * r
            a = math.pi / 2 + k * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy - rad * math.sin(a)))
        return pts
    if shape == "cross":
        w, h = 0.33 * r, r
        return [(cx - w, cy - h), (cx + w, cy - h), (cx + w, cy - w), (cx + h, cy - w),
                (cx + h, cy + w), (cx + w, cy + w), (cx + w, cy + h), (cx - w, cy + h),
                (cx - w, cy + w), (cx - h, cy + w), (cx - h, cy - w), (cx - w, cy - w)]
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


@lru_cache(maxsize=64)
def _font(px: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=max(px, 4))


def _supersampling(resolution: int) -> int:
    return 4 if resolution <= 64 else 2 if resolution <= 256 else 1


def render_scene(attrs: dict, resolution: int, details: dict | None = None) -> np.ndarray:
    """Render one scene to a uint8 array [H, W, 3]. `details` holds the jitter
    (offsets, scale, colour shifts); None draws the undisturbed canonical scene."""
    d = details or {}
    ss = _supersampling(resolution)
    side = resolution * ss
    bg = np.array(BACKGROUNDS[attrs.get("background", "white")]) + d.get("bg_shift", 0)
    img = Image.new("RGB", (side, side), tuple(int(v) for v in np.clip(bg, 0, 255)))
    draw = ImageDraw.Draw(img)
    objects = attrs["objects"] if "objects" in attrs else [attrs]
    for k, obj in enumerate(objects):
        _check_object(obj)
        ox, oy = d.get("offsets", [(0.0, 0.0)] * len(objects))[k]
        px, py = POSITIONS[obj["position"]]
        r = SIZES[obj["size"]] * d.get("scales", [1.0] * len(objects))[k] * side
        colour = np.array(COLORS[obj["color"]]) + np.asarray(d.get("color_shifts", [0] * len(objects))[k])
        fill = tuple(int(v) for v in np.clip(colour, 0, 255))
        cx, cy = (px + ox) * side, (py + oy) * side
        if obj["shape"] == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(_shape_polygon(obj["shape"], cx, cy, r), fill=fill)
    word = attrs.get("word")
    if word:
        _draw_word(draw, word, attrs, objects, side, bg)
    if ss > 1:
        img = img.reduce(ss)  # box filter: exact area anti-aliasing
    return np.array(img)


def _draw_word(draw, word, attrs, objects, side, bg):
    """Write `word` in a band that the objects leave free."""
    size = attrs.get("word_size", 0.17)
    contrast = attrs.get("word_contrast", 1.0)
    font = _font(int(round(size * side)))
    ink = tuple(int(v) for v in np.asarray(bg) * (1 - contrast) + np.array([20, 20, 20]) * contrast)
    low = any(o["position"] == "bottom" for o in objects)
    cy = (0.12 if low else 0.89) * side
    draw.text((side / 2, cy), word, fill=ink, font=font, anchor="mm")


def _check_object(obj: dict) -> None:
    for key, values in (("shape", SHAPES), ("color", COLORS), ("size", SIZES), ("position", POSITIONS)):
        if obj.get(key) not in values:
            raise ValueError(f"object {obj!r}: {key} must be one of {list(values)}")


# ----------------------------------------------------------------------------- the world

class ShapesWorld:
    """Procedural captioned scenes. Same seed, same pixels and captions.

    >>> world = ShapesWorld(seed=0)
    >>> batch = world.sample(16, objects=1)   # images [16, 3, 64, 64] in [0, 1]
    """

    vocabulary = {
        "shape": list(SHAPES),
        "color": list(COLORS),
        "size": list(SIZES),
        "position": list(POSITIONS),
        "background": list(BACKGROUNDS),
    }
    held_out = HELD_OUT
    words = list(WORDS)
    decoder_preset = "base32"       # the UNet of its shipped decoder (decoder.DECODER_PRESETS)
    weights = WorldWeights(clip="shapes", evaluator="shapes", decoder="shapes", upsamplers=("up64", "up128"),
                           priors={"diffusion": "diffusion", "autoregressive": "autoregressive"},
                           inpainter="shapes_inpaint")

    def __init__(self, seed: int = 0, resolution: int = 64):
        self.seed = check_int(seed, "seed", 0, hint="any non-negative integer")
        self.resolution = check_int(resolution, "resolution", 8, hint="pixels per side")
        self._rng = np.random.default_rng(seed)

    # -- drawing scenes
    @staticmethod
    def draw_scene(rng: np.random.Generator, objects: int = 1, split: str = "train",
                   word_prob: float = 0.0, jitter: bool = True) -> tuple[dict, dict]:
        """Draw one random scene: (attributes, details)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if objects not in (1, 2):
            raise ValueError(f"objects must be 1 or 2, got {objects!r}")
        positions = [POSITIONS_LIST[rng.integers(5)]] if objects == 1 else \
            list(PAIR_POSITIONS[rng.integers(len(PAIR_POSITIONS))])
        objs = []
        for k, pos in enumerate(positions):
            # "held_out": the first object carries a held-out pair, any other does not
            want_held = split == "held_out" and k == 0
            while True:
                shape, color = SHAPES[rng.integers(len(SHAPES))], COLOR_LIST[rng.integers(len(COLORS))]
                held = (shape, color) in HELD_OUT
                if split == "all" or held == want_held:
                    break
            objs.append({"shape": shape, "color": color, "size": SIZE_LIST[rng.integers(2)], "position": pos})
        background = BACKGROUND_LIST[rng.integers(len(BACKGROUNDS))]
        word = None
        has_free_band = not {"top", "bottom"} <= set(positions)
        if word_prob > 0 and rng.random() < word_prob and has_free_band:
            # a word that describes the scene: its (first) object's shape or colour
            word = objs[0]["shape"] if rng.random() < 0.6 else objs[0]["color"]
        attrs = dict(objs[0]) if objects == 1 else {"objects": objs}
        attrs.update(background=background, word=word)
        details = {}
        if jitter:
            details = {
                "offsets": [tuple(rng.uniform(-0.03, 0.03, 2)) for _ in objs],
                "scales": [float(rng.uniform(0.9, 1.1)) for _ in objs],
                "color_shifts": [tuple(rng.integers(-15, 16, 3)) for _ in objs],
                "bg_shift": rng.integers(-6, 7, 3),
            }
        return attrs, details

    # -- what trainers and probes ask of a world (unclip_lib.worlds)
    @staticmethod
    def draw_training(rng: np.random.Generator, split: str = "train", word_prob: float = 0.25,
                      multi_share: float = 0.25) -> tuple[dict, dict]:
        """One random training scene (two objects with probability multi_share; with 0, the
        draws are exactly draw_scene's with one object)."""
        return ShapesWorld.draw_scene(rng, 2 if multi_share > 0 and rng.random() < multi_share else 1, split,
                                      word_prob)

    @staticmethod
    def render_drawn(attrs: dict, details: dict, resolution: int) -> np.ndarray:
        """A drawn scene as uint8 [R, R, 3]."""
        return render_scene(attrs, resolution, details)

    clip_recipes = {"default": {}}   # one way to batch: consecutive items of the dataset

    @staticmethod
    def clip_batch(seed: int, step: int, batch_size: int, resolution: int, recipe: str = "default"):
        """CLIP training batch of step s: items step * B ... step * B + B - 1 of the dataset."""
        if recipe != "default":
            raise ValueError(f"unknown CLIP batch recipe {recipe!r}; the shapes world's: ['default']")
        data = ShapesDataset(seed=seed, resolution=resolution)
        items = [data[step * batch_size + j] for j in range(batch_size)]
        return torch.stack([im for im, _ in items]), [c for _, c in items]

    @staticmethod
    def dataset(seed: int, resolution: int, length: int = 1_000_000) -> "ShapesDataset":
        return ShapesDataset(seed=seed, length=length, resolution=resolution)

    @staticmethod
    def clip_report(clip, n: int = 300, seed: int = 10_000) -> dict:
        """Zero-shot accuracy per attribute of `n` fresh one-object scenes (evaluate.zero_shot_accuracy)."""
        from .evaluate import zero_shot_accuracy

        val = ShapesWorld(seed=seed).sample(n, resolution=clip.image_size)
        return {k: round(v, 4) for k, v in zero_shot_accuracy(clip, val.images, val.attributes).items()}

    def validation_images(self, n: int, resolution: int):
        """Fresh one-object scenes of this world's seed, to reconstruct in validations."""
        return self.sample(n, objects=1, resolution=resolution)

    @staticmethod
    def reconstruction_report(evaluator, generated, batch) -> dict:
        """Per-attribute agreement of the evaluator's reading of generated images with its
        reading of the true ones (one object each)."""
        from .evaluate import attribute_accuracy

        acc = attribute_accuracy(evaluator.predict(generated, objects=1), evaluator.predict(batch.images, objects=1))
        return {k: round(v, 3) for k, v in acc.items()}

    @staticmethod
    def evaluator_recipe(validate: int = 500):
        """How the shapes evaluator trains (train.evaluator_batch) and is checked: scene accuracy
        on `validate` fresh scenes, half one-object at 32 px, half two-object at 128 px."""
        from dataclasses import asdict

        from .evaluate import AttributeNet, Evaluator, EvaluatorConfig, evaluator_loss, scene_accuracy
        from .train import EvaluatorBatch
        from .worlds import EvaluatorRecipe

        world = ShapesWorld(seed=20_000)
        val = [world.sample(validate // 2, objects=k, resolution=r, split="all", word_prob=0.3)
               for k, r in ((1, 32), (2, 128))]

        def report(net):
            ev = Evaluator(net)
            return {f"{b.images.shape[-1]}px/{'1' if 'objects' not in b.attributes[0] else '2'}obj":
                    {k: round(v, 4) for k, v in scene_accuracy(ev.predict(b.images), b.attributes).items()}
                    for b in val}

        config = EvaluatorConfig()
        return EvaluatorRecipe(AttributeNet(config), asdict(config), EvaluatorBatch, evaluator_loss, report, Evaluator)

    def sample(self, n: int, objects: int = 1, resolution: int | None = None, split: str = "train",
               word_prob: float = 0.0, seed: int | None = None, caption_style: str = "canonical") -> Batch:
        """n random scenes. images: [n, 3, R, R] in [0, 1].

        split: "train" (no held-out shape x colour pair), "held_out" (every scene has one)
        or "all". seed=None continues this world's stream; an int gives a fixed batch.
        caption_style: "canonical" or "varied" (the training captions).
        """
        n = check_int(n, "n", 1, hint="the number of images")
        check_number(word_prob, "word_prob", 0, 1, hint="the share of scenes with a written word")
        check_int(seed, "seed", 0, optional=True, hint="None continues this world's stream")
        res = self.resolution if resolution is None else resolution
        if not isinstance(res, (int, np.integer)) or res < 8:
            raise ValueError(f"resolution must be an integer of at least 8 pixels, got {res!r}")
        if n * 3 * res * res > MAX_VALUES:
            raise ValueError(f"{n} images of {res} x {res} would take {n * 3 * res * res * 4 / 2**30:.0f} GiB as "
                             f"float32; sample at most {MAX_VALUES // (3 * res * res)} at a time")
        if caption_style not in ("canonical", "varied"):
            raise ValueError(f"caption_style must be 'canonical' or 'varied', got {caption_style!r}")
        rng = self._rng if seed is None else np.random.default_rng([self.seed, seed])
        scenes = [self.draw_scene(rng, objects, split, word_prob) for _ in range(n)]
        attrs = [a for a, _ in scenes]
        details = [d for _, d in scenes]
        captions = [canonical_caption(a) if caption_style == "canonical" else _random_caption(a, rng)
                    for a in attrs]
        images = self.render(attrs, res, details=details)
        return Batch(images, captions, attrs, details)

    def render(self, attrs_list: list[dict], resolution: int | None = None,
               details: list[dict] | None = None) -> torch.Tensor:
        """Images of exactly these scenes: [N, 3, R, R] in [0, 1]. Without `details`
        the scenes are drawn undisturbed (centred, nominal size and colour)."""
        if isinstance(attrs_list, dict):
            attrs_list = [attrs_list]
        resolution = self.resolution if resolution is None else resolution
        if not attrs_list:
            raise ValueError("render: got an empty list of scenes; pass at least one attribute dict")
        if not isinstance(resolution, (int, np.integer)) or resolution < 8:
            raise ValueError(f"resolution must be at least 8 pixels, got {resolution}")
        details = details or [None] * len(attrs_list)
        arrays = np.stack([render_scene(self._complete(a), resolution, d)
                           for a, d in zip(attrs_list, details)])
        return torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div_(255)

    @staticmethod
    def _complete(attrs: dict) -> dict:
        """Fill defaults so a partial dict can be rendered (white background, no word)."""
        out = {"background": "white", "word": None, **attrs}
        if out["background"] not in BACKGROUNDS:
            raise ValueError(f"background must be one of {list(BACKGROUNDS)}, got {out['background']!r}")
        return out

    @staticmethod
    def caption(attrs: dict) -> str:
        """The canonical caption; a partial dict mentions only its keys."""
        return canonical_caption(attrs)

    @staticmethod
    def training_caption(attrs: dict, rng: np.random.Generator) -> str:
        """A varied training caption (template and omissions drawn from rng)."""
        return _random_caption(attrs, rng)

    @classmethod
    def check_caption(cls, caption, name: str = "caption") -> str:
        """The caption, if it names something of this world (a shape, colour, size, position or
        background); otherwise a clear error with close words. A text diff between captions
        that name nothing the CLIP was trained on points nowhere in particular."""
        caption = check_caption(caption, name)
        words = re.findall(r"[a-z]+", caption.lower())
        known = {w for values in cls.vocabulary.values() for value in values for w in value.split()}
        if known.isdisjoint(words):
            close = sorted({m for w in words for m in difflib.get_close_matches(w, known, n=2, cutoff=0.7)})
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"{name} {caption!r} names no shape, colour, size, position or background of the shapes"
                             f" world{hint} (shapes: {', '.join(SHAPES)}; colours: {', '.join(COLORS)})")
        return caption

    @staticmethod
    def combinations(split: str = "all") -> list[dict]:
        """Every one-object (shape, color, size, position) combination of a split."""
        out = []
        for shape, color, size, pos in itertools.product(SHAPES, COLORS, SIZES, POSITIONS):
            held = (shape, color) in HELD_OUT
            if split == "all" or (split == "held_out") == held:
                out.append({"shape": shape, "color": color, "size": size, "position": pos})
        return out


POSITIONS_LIST = list(POSITIONS)
COLOR_LIST = list(COLORS)
SIZE_LIST = list(SIZES)
BACKGROUND_LIST = list(BACKGROUNDS)


class ShapesDataset(torch.utils.data.Dataset):
    """A map-style dataset of `length` captioned scenes; item i is a pure function of
    (seed, i), so any worker, any epoch and any resumed run sees the same data.

    Item: (image [3, R, R] in [0, 1], training caption). `attributes(i)` gives the truth.
    `objects` is the probability that a scene has two objects.
    """

    def __init__(self, seed: int = 0, length: int = 1_000_000, resolution: int = 64,
                 two_object_prob: float = 0.25, word_prob: float = 0.25, split: str = "train",
                 caption_style: str = "varied"):
        self.seed, self.length, self.resolution = seed, length, resolution
        self.two_object_prob, self.word_prob, self.split = two_object_prob, word_prob, split
        self.caption_style = caption_style

    def __len__(self) -> int:
        return self.length

    def scene(self, i: int) -> tuple[dict, dict, np.random.Generator]:
        rng = np.random.default_rng([self.seed, i])
        objects = 2 if rng.random() < self.two_object_prob else 1
        attrs, details = ShapesWorld.draw_scene(rng, objects, self.split, self.word_prob)
        return attrs, details, rng

    def attributes(self, i: int) -> dict:
        return self.scene(i)[0]

    def __getitem__(self, i: int):
        if not 0 <= i < self.length:
            raise IndexError(i)
        attrs, details, rng = self.scene(i)
        caption = _random_caption(attrs, rng) if self.caption_style == "varied" else canonical_caption(attrs)
        image = torch.from_numpy(render_scene(attrs, self.resolution, details)).permute(2, 0, 1).float() / 255
        return image, caption

"""Probing CLIP with the decoder (unCLIP section 4): what survives in a few principal
components, and what a misleading written word does.

PCA probe: fit PCA on the z_i of many world images, rebuild each image's z_i from its
first k components, decode with one fixed x_T per image, and ask the evaluator which
attributes survived at each k.

Typographic attack: write a word naming a wrong shape (or colour) on an image, e.g. a
circle with "square"; compare CLIP's zero-shot probabilities before and after, and ask
what the decoder draws from the attacked z_i: the object, the word, or the word's meaning.

    pca = fit_embedding_pca(clip, n=4000, seed=0)
    pca_probe(pipe, evaluator, pca, ks=(1, 2, 4, 8, 16, 128), n_images=100, seed=0)
    scenes = typographic_scenes(200, seed=0, kind="shape")
    attack_scores(clip, scenes)                    # zero-shot before / after the word
    attack_decodings(pipe, evaluator, scenes)      # what the decoder reproduces

The zero-shot half works with any CLIP `load_clip` gives, including a real open_clip
model (`photo_attack` writes a word on photographs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .evaluate import attribute_matches
from .latents import EmbeddingPCA
from .world import COLORS, SHAPES, ShapesWorld, canonical_caption

PCA_KEYS = ("shape", "color", "size", "position", "background")


# ----------------------------------------------------------------------------- PCA

def fit_embedding_pca(clip, n: int = 4000, seed: int = 0, batch: int = 500) -> EmbeddingPCA:
    """PCA of the z_i of n world scenes drawn as in training (one or two objects, some words)."""
    world = ShapesWorld(seed=seed)
    z = []
    for i in range(0, n, batch):
        m = min(batch, n - i)
        one = world.sample(m - m // 4, objects=1, split="all", word_prob=0.25, seed=2 * i)
        two = world.sample(m // 4, objects=2, split="all", word_prob=0.25, seed=2 * i + 1) if m // 4 else None
        z.append(clip.encode_image(one.images))
        if two is not None:
            z.append(clip.encode_image(two.images))
    return EmbeddingPCA.fit(torch.cat(z))


def pca_probe(pipe, evaluator, pca: EmbeddingPCA, ks=(1, 2, 4, 8, 16, 32, 64, 128), n_images: int = 100,
              seed: int = 0, batch=None, return_images: int = 0):
    """Attribute accuracy of decodings of z_i rebuilt from its first k principal components.

    Fresh one-object scenes (or `batch`); each is decoded with the pipeline's sampling
    defaults from one x_T held fixed across k, so only the embedding changes. Returns
    {k: {attribute: share of decodings showing the source's value}} and, if
    return_images > 0, also the first return_images decodings per k as [len(ks), m, 3, r, r]."""
    from .experiments import source_scenes

    batch = batch if batch is not None else source_scenes(n_images, seed)
    d, r = pipe.defaults, pipe.base_resolution
    z = pipe.clip.encode_image(batch.images)
    x_T = torch.randn((z.shape[0], 3, r, r), generator=torch.Generator().manual_seed(seed))
    truth = batch.attributes
    table, shown = {}, []
    for k in ks:
        images = pipe.decode(pca.reconstruct(z, k), x_T=x_T, steps=d.decoder_steps, guidance=d.decoder_guidance,
                             clip_x0=True, upsample=False)
        preds = evaluator.predict(images, objects=1)
        m = attribute_matches(preds, truth, PCA_KEYS[:4])
        row = {key: float(np.mean(m[key])) for key in PCA_KEYS[:4]}
        row["background"] = float(np.mean([p.get("background") == t["background"] for p, t in zip(preds, truth)]))
        table[int(k)] = row
        if return_images:
            shown.append(images[:return_images])
    return (table, torch.stack(shown)) if return_images else table


# ----------------------------------------------------------------------------- typographic attacks

@dataclass
class AttackScenes:
    """One-object scenes rendered without and with a misleading word (N of each)."""
    clean: torch.Tensor        # [N, 3, R, R]
    attacked: torch.Tensor     # [N, 3, R, R] the same scenes with the word written on them
    attributes: list[dict]     # the scenes' true attributes (no word)
    words: list[str]           # the word written on each: a wrong shape (or colour)
    kind: str                  # "shape" or "color": the attribute the attack targets
    control: bool = False      # True: the words name a wrong value of the *other* attribute, so
                               # they cover the object as much but point at no label of `kind`


def typographic_scenes(n: int, seed: int, kind: str = "shape", word_size: float = 0.17,
                       word_contrast: float = 1.0, resolution: int = 64, control: bool = False) -> AttackScenes:
    """n fresh one-object scenes, each with a word naming a random wrong shape (kind="shape")
    or colour (kind="color"). word_size is the text height over the image side (long words
    are cut at the border from about 0.25 at 64 px); word_contrast runs from 0 (invisible: the
    background's colour) to 1 (near-black ink). control=True writes a wrong value of the other
    attribute instead (a colour word on a shape attack): the same occlusion, no misleading label."""
    from .experiments import edit_targets, source_scenes

    if not 0.0 <= word_contrast <= 1.0:
        raise ValueError(f"word_contrast must lie in [0, 1], got {word_contrast}")
    if not 0.05 <= word_size <= 0.5:
        raise ValueError(f"word_size must lie in [0.05, 0.5] of the image side, got {word_size}")
    if kind not in ("shape", "color"):
        raise ValueError(f"kind must be 'shape' or 'color', got {kind!r}")
    batch = source_scenes(n, seed, resolution)
    words = edit_targets(batch.attributes, ("color" if kind == "shape" else "shape") if control else kind, seed + 1)
    attacked = [{**a, "word": w, "word_size": word_size, "word_contrast": word_contrast}
                for a, w in zip(batch.attributes, words)]
    images = ShapesWorld(seed=seed).render(attacked, resolution, details=batch.details)
    return AttackScenes(batch.images, images, batch.attributes, words, kind, control)


def label_prompts(attrs: dict, kind: str) -> list[str]:
    """Zero-shot prompts for the attribute `kind` of one scene: every value of that
    attribute, with the scene's other attribute stated ("a red circle", "a red square", ...)."""
    values = SHAPES if kind == "shape" else tuple(COLORS)
    other = "color" if kind == "shape" else "shape"
    return [canonical_caption({kind: v, other: attrs[other]}) for v in values]


@torch.no_grad()
def label_probs(clip, images: torch.Tensor, prompts: list[list[str]]) -> torch.Tensor:
    """CLIP zero-shot probabilities [N, L] of each image over its own L prompts."""
    z_i = clip.encode_image(images)                                         # [N, D]
    flat = [p for row in prompts for p in row]
    z_t = clip.encode_text(flat).view(len(prompts), len(prompts[0]), -1)    # [N, L, D]
    return (clip.logit_scale * torch.einsum("nd,nld->nl", z_i, z_t)).softmax(-1)


def attack_scores(clip, scenes: AttackScenes) -> dict[str, float]:
    """Zero-shot CLIP on the clean and the attacked images: accuracy on each, mean
    probability of the true label and of the word's label on each, and the attack
    success rate: the share of images read correctly when clean whose top label becomes
    the word once it is written. "success_by_chance" is what that share would be if the
    errors the word causes fell evenly on the wrong labels (covering the object, not
    reading the word): (1 - attacked accuracy on those images) / (labels - 1). For a
    control (words naming the other attribute) the word-label figures are NaN."""
    values = list(SHAPES if scenes.kind == "shape" else COLORS)
    prompts = [label_prompts(a, scenes.kind) for a in scenes.attributes]
    true = torch.tensor([values.index(a[scenes.kind]) for a in scenes.attributes])
    rows = torch.arange(len(true))
    p_clean, p_att = label_probs(clip, scenes.clean, prompts), label_probs(clip, scenes.attacked, prompts)
    right = p_clean.argmax(-1) == true
    kept = p_att.argmax(-1) == true
    nan = float("nan")
    out = {"clean_accuracy": float(right.float().mean()), "attacked_accuracy": float(kept.float().mean()),
           "p_true_clean": float(p_clean[rows, true].mean()), "p_true_attacked": float(p_att[rows, true].mean()),
           "p_word_clean": nan, "p_word_attacked": nan, "success": nan,
           "success_by_chance": float((~kept[right]).float().mean()) / (len(values) - 1) if right.any() else nan}
    if not scenes.control:
        word = torch.tensor([values.index(w) for w in scenes.words])
        flipped = p_att.argmax(-1) == word
        out.update(p_word_clean=float(p_clean[rows, word].mean()), p_word_attacked=float(p_att[rows, word].mean()),
                   success=float(flipped[right].float().mean()) if right.any() else nan)
    return out


def attack_decodings(pipe, evaluator, scenes: AttackScenes, samples: int = 2, seed: int = 0) -> dict[str, float]:
    """What the decoder draws from the attacked images' z_i (fresh x_T, default sampling):
    the share of samples showing the true object ("object", its shape or colour as the
    attack's kind), the word's meaning instead ("meaning"), and the written word itself
    ("word", read by the evaluator); also "object_clean", the same for the clean images."""
    key = scenes.kind
    out = {}
    for name, images in (("", scenes.attacked), ("_clean", scenes.clean)):
        z = pipe.clip.encode_image(images).repeat_interleave(samples, 0)
        decoded = pipe.decode(z, seed=seed, upsample=False)
        preds = evaluator.predict(decoded)
        objs = [p["objects"][0] if "objects" in p else p for p in preds]
        truth = [a[key] for a in scenes.attributes for _ in range(samples)]
        words = [w for w in scenes.words for _ in range(samples)]
        out[f"object{name}"] = float(np.mean([o.get(key) == t for o, t in zip(objs, truth)]))
        out[f"meaning{name}"] = float(np.mean([o.get(key) == w for o, w in zip(objs, words)]))
        out[f"word{name}"] = float(np.mean([p.get("word") == w for p, w in zip(preds, words)]))
    return out


# ----------------------------------------------------------------------------- real photographs

# Photographs that ship inside scikit-image's wheel (no download), with zero-shot labels.
PHOTOS = {"chelsea": "a cat", "coffee": "a cup of coffee", "astronaut": "an astronaut",
          "rocket": "a rocket", "motorcycle_left": "a motorcycle"}
PHOTO_LABELS = ("a cat", "a dog", "a cup of coffee", "an astronaut", "a rocket", "a motorcycle",
                "a car", "a bird", "a pizza", "a guitar")


def load_photos(size: int = 224) -> tuple[torch.Tensor, list[str]]:
    """The photographs of PHOTOS, centre-cropped to squares of `size` px: [N, 3, size, size]
    and their labels. Needs scikit-image (a test dependency); never downloads."""
    try:
        import skimage
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the photo probes read scikit-image's bundled sample photos: pip install scikit-image") from err
    from pathlib import Path

    from PIL import Image

    folder = Path(skimage.__file__).parent / "data"
    images, labels = [], []
    for name, label in PHOTOS.items():
        matches = sorted(folder.glob(f"{name}.*"))
        if not matches:
            continue
        im = Image.open(matches[0]).convert("RGB")
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
        images.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255)
        labels.append(label)
    if not images:
        raise FileNotFoundError(f"no sample photographs found in {folder}")
    return torch.stack(images), labels


def write_word(images: torch.Tensor, words: list[str], height: float = 0.16) -> torch.Tensor:
    """images [N, 3, H, W] with a white label holding words[i] written at the bottom centre,
    like the handwritten "iPod" note on the paper's apple."""
    from PIL import Image, ImageDraw

    from .world import _font

    out = []
    for x, word in zip(images, words):
        im = Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        draw = ImageDraw.Draw(im)
        side = im.width
        font = _font(int(round(height * side)))
        box = draw.textbbox((side / 2, side * 0.85), word, font=font, anchor="mm")
        pad = int(0.02 * side)
        draw.rectangle((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), fill=(255, 255, 255))
        draw.text((side / 2, side * 0.85), word, fill=(10, 10, 10), font=font, anchor="mm")
        out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


@torch.no_grad()
def photo_attack(clip, labels: tuple[str, ...] = PHOTO_LABELS, size: int | None = None) -> list[dict]:
    """Zero-shot labels of each bundled photograph, clean and with the word of another
    label written on it. Returns one dict per photo: its label, the word, and CLIP's
    probability of each before and after."""
    images, truths = load_photos(size or clip.image_size)
    # the word: the next photo's label, minus its article ("a cat" -> "cat")
    words = [truths[(i + 1) % len(truths)].split(" ", 1)[1] for i in range(len(truths))]
    attacked = write_word(images, words)
    prompts = [f"a photo of {label}" for label in labels]
    p_clean, p_att = clip.zero_shot(images, prompts), clip.zero_shot(attacked, prompts)
    rows = []
    for i, (truth, word) in enumerate(zip(truths, words)):
        t = labels.index(truth)
        w = next(j for j, label in enumerate(labels) if label.endswith(" " + word))
        rows.append({"label": truth, "word": word, "p_true_clean": float(p_clean[i, t]),
                     "p_true_attacked": float(p_att[i, t]), "p_word_clean": float(p_clean[i, w]),
                     "p_word_attacked": float(p_att[i, w]), "top_attacked": labels[int(p_att[i].argmax())]})
    return rows

"""Measuring in the emoji world: a CLIP's zero-shot figures and the evaluator (the ruler).

Zero-shot, as CLIP is used: an image is scored against candidate captions and the best
one wins. Candidates are the world's own canonical names, so nothing here was tuned to a
model:

- concept: all concept names ("red apple", ...), top-1 and top-5;
- style: the image's own name in each of the four styles ("red apple in the noto style");
- skin tone: the image's own name with each skin tone and without one (concepts that have them);
- written word (reading): "an emoji with the word '<w>' written on it" for every word of the
  world's vocabulary;
- retrieval: image -> caption and caption -> image recall@1/@5 among a batch of canonical
  captions.

The evaluator (`EmojiEvaluator`, `load_evaluator("emoji")`) is a CNN trained on the true
renders of every image of the world, independent of CLIP: it reads concept (top-1 and
top-5 over all concepts), style, skin tone and written word, and its penultimate features
are the space of the Frechet distance between image sets (`evaluate.frechet_distance`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .emoji import SKIN_TONES, STYLES, EmojiWorld


def _topk_hits(scores: torch.Tensor, truth: torch.Tensor, k: int) -> float:
    """Share of rows whose true column is among the k best. scores [N, C], truth [N]."""
    top = scores.topk(min(k, scores.shape[1]), dim=-1).indices
    return float((top == truth[:, None]).any(-1).float().mean())


def _own_prompt_choice(clip, z_i: torch.Tensor, prompts: list[list[str]]) -> list[int]:
    """Per image, the index of its best prompt among its own candidates. z_i [N, D]."""
    flat = [p for row in prompts for p in row]
    z_t = clip.encode_text(flat)
    out, at = [], 0
    for i, row in enumerate(prompts):
        out.append(int((z_t[at:at + len(row)] @ z_i[i]).argmax()))
        at += len(row)
    return out


def concept_scores(clip, world: EmojiWorld, images: torch.Tensor) -> torch.Tensor:
    """Cosine of each image with every concept's name: [N, C], columns in world.vocabulary order."""
    names = [world.concepts[h]["name"] for h in world.concepts]
    return clip.encode_image(images) @ clip.encode_text(names).T


@torch.no_grad()
def clip_report(clip, world: EmojiWorld, n: int = 300, seed: int = 10_000, word_n: int | None = None) -> dict:
    """Zero-shot figures of a CLIP on fresh emoji: concept top-1/top-5, style, skin tone and
    retrieval on training pairs and on held-out (concept, style) pairs, and reading on images
    with a written word: the word among the whole vocabulary (top-1, top-5), and the image's
    caption with its word against the same caption with another (`word_vs_other`, chance 50%).
    Returns {figure: share in [0, 1]}."""
    word_n = word_n or max(50, n // 3)
    order = {h: j for j, h in enumerate(world.concepts)}
    names = [world.concepts[h]["name"] for h in world.concepts]
    z_names = clip.encode_text(names)
    out = {}
    for split in ("train", "held_out"):
        batch = world.sample(n, resolution=clip.image_size, split=split, seed=seed)
        z_i = clip.encode_image(batch.images)
        truth = torch.tensor([order[a["concept"]] for a in batch.attributes])
        scores = z_i @ z_names.T
        out[f"{split}/concept_top1"] = _topk_hits(scores, truth, 1)
        out[f"{split}/concept_top5"] = _topk_hits(scores, truth, 5)
        styles = _own_prompt_choice(clip, z_i, [[f"{world.name(a['concept'], a['skin_tone'])} in the {s} style"
                                                 for s in STYLES] for a in batch.attributes])
        out[f"{split}/style"] = float(np.mean([STYLES[j] == a["style"] for j, a in zip(styles, batch.attributes)]))
        # retrieval between the images and their canonical captions (name + style)
        z_c = clip.encode_text(batch.captions)
        sims, diag = z_i @ z_c.T, torch.arange(len(batch))
        for k in (1, 5):
            out[f"{split}/image_to_text_r@{k}"] = _topk_hits(sims, diag, k)
            out[f"{split}/text_to_image_r@{k}"] = _topk_hits(sims.T, diag, k)
    # skin tone: concepts that have skin-tone images, each with a tone or none
    rng = np.random.default_rng([seed, 1])
    toned = [a for a in world.combinations("train") if world._skins[a["concept"]]]
    picked = [toned[i] for i in rng.choice(len(toned), size=min(n, len(toned)), replace=False)]
    z_i = clip.encode_image(world.render(picked, clip.image_size))
    options = (None,) + SKIN_TONES
    tones = _own_prompt_choice(clip, z_i, [[world.name(a["concept"], t) for t in options] for a in picked])
    out["train/skin_tone"] = float(np.mean([options[j] == a["skin_tone"] for j, a in zip(tones, picked)]))
    # reading: which word of the vocabulary is written on the image
    batch = world.sample(word_n, resolution=clip.image_size, split="all", word_prob=1.0, seed=seed + 1)
    z_w = clip.encode_text([f"an emoji with the word '{w}' written on it" for w in world.words])
    truth = torch.tensor([world.words.index(a["word"]) for a in batch.attributes])
    z_i = clip.encode_image(batch.images)
    out["word_top1"] = _topk_hits(z_i @ z_w.T, truth, 1)
    out["word_top5"] = _topk_hits(z_i @ z_w.T, truth, 5)
    # the easier question a typographic attack asks: the image's own caption with its word, or
    # the same caption with another word?
    others = [world.words[(world.words.index(a["word"]) + 1 + int(rng.integers(len(world.words) - 1)))
                          % len(world.words)] for a in batch.attributes]
    pairs = [[world.caption(a), world.caption({**a, "word": w})] for a, w in zip(batch.attributes, others)]
    out["word_vs_other"] = float(np.mean([j == 0 for j in _own_prompt_choice(clip, z_i, pairs)]))
    return {k: round(v, 4) for k, v in out.items()}


# ----------------------------------------------------------------------------- the evaluator

@dataclass(frozen=True)
class EmojiEvaluatorConfig:
    """The emoji ruler: a small residual CNN with one head per attribute. `concepts` and
    `words` are the class counts of the world it was trained on (checked on load)."""

    concepts: int
    words: int
    input_size: int = 64
    width: int = 48
    hidden: int = 512


def emoji_heads(config: EmojiEvaluatorConfig) -> dict[str, int]:
    """Classes per head: concept, style, skin tone (index 0: none) and word (index 0: none)."""
    return {"concept": config.concepts, "style": len(STYLES), "skin_tone": 1 + len(SKIN_TONES),
            "word": 1 + config.words}


class _Res(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU(),
                                  nn.Conv2d(cout, cout, 3, 1, 1), nn.GroupNorm(8, cout))
        self.skip = nn.Identity() if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride)

    def forward(self, x):
        return F.silu(self.body(x) + self.skip(x))


class EmojiNet(nn.Module):
    """CNN [N, 3, S, S] -> logits per head {name: [N, classes]}; S = config.input_size."""

    def __init__(self, config: EmojiEvaluatorConfig):
        super().__init__()
        self.config = config
        w = config.width
        # 64 -> 32 -> 16 -> 8 -> 4; the 4 x 4 map is flattened, so where a word sits still counts
        self.features = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1), nn.GroupNorm(8, w), nn.SiLU(),
                                      _Res(w, w, 2), _Res(w, 2 * w, 2), _Res(2 * w, 4 * w, 2),
                                      _Res(4 * w, 4 * w, 2))
        flat = 4 * w * (config.input_size // 16) ** 2
        self.trunk = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(flat, config.hidden), nn.SiLU())
        self.heads = nn.ModuleDict({k: nn.Linear(config.hidden, n) for k, n in emoji_heads(config).items()})

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [N, hidden] of images [N, 3, S, S] in [0, 1]."""
        return self.trunk(self.features((x - 0.5) / 0.25))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.embed(x)
        return {k: head(h) for k, head in self.heads.items()}


def emoji_labels(world: EmojiWorld, attrs_list: list[dict]) -> dict[str, torch.Tensor]:
    """Attribute dicts -> class indices per head [N]."""
    order = {h: j for j, h in enumerate(world.concepts)}
    words = {w: j + 1 for j, w in enumerate(world.words)}
    return {"concept": torch.tensor([order[a["concept"]] for a in attrs_list]),
            "style": torch.tensor([STYLES.index(a["style"]) for a in attrs_list]),
            "skin_tone": torch.tensor([0 if a.get("skin_tone") is None else 1 + SKIN_TONES.index(a["skin_tone"])
                                       for a in attrs_list]),
            "word": torch.tensor([words.get(a.get("word"), 0) if a.get("word") else 0 for a in attrs_list])}


def emoji_evaluator_loss(logits: dict, labels: dict) -> torch.Tensor:
    """Cross-entropy summed over the heads, averaged over the batch."""
    return sum(F.cross_entropy(logits[k], labels[k]) for k in labels)


def augment(images: torch.Tensor, generator: torch.Generator, shift: float = 0.06,
            scale: tuple[float, float] = (0.85, 1.1)) -> torch.Tensor:
    """Meaning-keeping augmentation of emoji on white: a random zoom and shift per image
    (white fills what comes in from outside). No colour jitter (colour is what a red and a
    green apple differ by) and no flips (left and right are concepts). [N,3,H,W] -> same."""
    n = len(images)
    s = torch.empty(n).uniform_(*scale, generator=generator)
    t = torch.empty(n, 2).uniform_(-shift, shift, generator=generator) * 2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    ink = F.grid_sample(1 - images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (1 - ink).clamp(0, 1)


def emoji_evaluator_batch(world: EmojiWorld, seed: int, step: int, batch_size: int,
                          resolutions=(32, 64), input_size: int = 64):
    """Evaluator training batch of step s over every image of the world (held-out pairs
    too: the ruler must know what it judges): a written word on 35% of them, rendered at a
    random resolution, resized to the input size, zoomed and shifted, half with light noise
    as generated images have. Returns (images [B,3,S,S], labels)."""
    from .images import resize

    rng = np.random.default_rng([seed, step, 7])
    attrs = [world.draw_image(rng, "all", word_prob=0.35) for _ in range(batch_size)]
    images = []
    for a in attrs:
        res = int(rng.choice(resolutions))
        x = torch.from_numpy(world.render_array(a, res)).permute(2, 0, 1).float()[None] / 255
        images.append(resize(x, input_size))
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    x = augment(torch.cat(images), g)
    sigma = torch.rand(len(x), 1, 1, 1, generator=g) * 0.05
    noisy = torch.rand(len(x), 1, 1, 1, generator=g) < 0.5
    x = (x + noisy * sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, emoji_labels(world, attrs)


class EmojiEvaluator:
    """Predicts the concept, style, skin tone and written word of emoji images (independent of CLIP)."""

    def __init__(self, net: EmojiNet, world: EmojiWorld | None = None, device: str | torch.device = "cpu"):
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.world = world or EmojiWorld()
        if len(self.world.concepts) != net.config.concepts or len(self.world.words) != net.config.words:
            raise ValueError(f"this evaluator was trained on {net.config.concepts} concepts and {net.config.words} "
                             f"words; the emoji data here has {len(self.world.concepts)} and "
                             f"{len(self.world.words)}: retrain it with `unclip-lab train evaluator --world emoji`")
        self._concepts = list(self.world.concepts)

    def logits(self, images, batch_size: int = 256) -> dict[str, torch.Tensor]:
        from .evaluate import in_chunks

        outs = in_chunks(self.net, images, self.net.config.input_size, self.device, batch_size)
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}

    def features(self, images, batch_size: int = 256) -> torch.Tensor:
        """Penultimate features [N, hidden] (float64): the space of `frechet_distance`."""
        from .evaluate import in_chunks

        return torch.cat(in_chunks(self.net.embed, images, self.net.config.input_size, self.device,
                                   batch_size)).double()

    def predict(self, images, top: int = 5) -> list[dict]:
        """One dict per image: concept (hexcode), name, style, skin_tone (or None), word (or
        None), and the `top` most likely concepts ("top_concepts")."""
        logits = self.logits(images)
        best = logits["concept"].topk(top, dim=-1).indices
        out = []
        for i in range(len(best)):
            concepts = [self._concepts[j] for j in best[i].tolist()]
            tone = int(logits["skin_tone"][i].argmax())
            word = int(logits["word"][i].argmax())
            out.append({"concept": concepts[0], "name": self.world.concepts[concepts[0]]["name"],
                        "style": STYLES[int(logits["style"][i].argmax())],
                        "skin_tone": None if tone == 0 else SKIN_TONES[tone - 1],
                        "word": None if word == 0 else self.world.words[word - 1], "top_concepts": concepts})
        return out


def emoji_accuracy(predicted: list[dict], truth: list[dict]) -> dict[str, float]:
    """Shares right: concept top-1 and top-5, style, skin tone, written word, and "all" (concept
    top-1, style, skin tone and word all right)."""
    hits = {k: [] for k in ("concept_top1", "concept_top5", "style", "skin_tone", "word", "all")}
    for p, t in zip(predicted, truth, strict=True):
        row = {"concept_top1": p["concept"] == t["concept"], "concept_top5": t["concept"] in p["top_concepts"],
               "style": p["style"] == t["style"], "skin_tone": p["skin_tone"] == t.get("skin_tone"),
               "word": p["word"] == t.get("word")}
        row["all"] = row["concept_top1"] and row["style"] and row["skin_tone"] and row["word"]
        for k, v in row.items():
            hits[k].append(v)
    return {k: float(np.mean(v)) for k, v in hits.items()}


class EmojiEvaluatorBatch:
    """make_batch(step) of the evaluator's training (`emoji_evaluator_batch`)."""

    def __init__(self, world: EmojiWorld, seed: int, batch_size: int):
        self.world, self.seed, self.batch_size = world, seed, batch_size

    def __call__(self, step: int):
        return emoji_evaluator_batch(self.world, self.seed, step, self.batch_size)


def evaluator_report(evaluator: EmojiEvaluator, n: int = 500, seed: int = 20_000) -> dict:
    """The evaluator's accuracy on fresh true renders (no augmentation), a written word on a
    third of them: training pairs at 64 and 32 px, held-out pairs at 64 px."""
    world = evaluator.world
    out = {}
    for split, res in (("train", 64), ("train", 32), ("held_out", 64)):
        batch = world.sample(n, resolution=res, split=split, word_prob=0.3, seed=seed)
        acc = emoji_accuracy(evaluator.predict(batch.images), batch.attributes)
        out[f"{split}/{res}px"] = {k: round(v, 4) for k, v in acc.items()}
    return out


def one_style(world: EmojiWorld, batch, resolution: int, style: str = "openmoji") -> torch.Tensor:
    """The batch's emoji redrawn in one style wherever that style draws them (words and skin
    tones kept): the same concepts with the style diversity gone, a calibration point of the
    Fréchet distance. [N, 3, R, R]."""
    world.check_style(style)
    return world.render([{**a, "style": style} if style in world.styles_of(a["concept"], a["skin_tone"]) else a
                         for a in batch.attributes], resolution)


def evaluator_recipe(world: EmojiWorld, validate: int = 500):
    from dataclasses import asdict

    from .worlds import EvaluatorRecipe

    config = EmojiEvaluatorConfig(concepts=len(world.concepts), words=len(world.words))
    return EvaluatorRecipe(
        EmojiNet(config), asdict(config), lambda seed, batch_size: EmojiEvaluatorBatch(world, seed, batch_size),
        emoji_evaluator_loss, lambda net: evaluator_report(EmojiEvaluator(net, world), n=validate),
        lambda net: EmojiEvaluator(net, world))

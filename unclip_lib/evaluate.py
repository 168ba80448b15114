"""The attribute evaluator (a ruler independent of CLIP) and the metrics built on it.

The evaluator is a small CNN trained on the world's ground truth. It reads a scene as
five position slots (left, right, top, bottom, center), each empty or holding an object
of some shape, colour and size, plus the background tint and the written word. So it
answers one- and two-object scenes in the same form as `ShapesWorld`'s attribute dicts.

    evaluator = load_evaluator("shapes")
    evaluator.predict(images)          # one attribute dict per image

Zero-shot CLIP accuracy (`zero_shot_accuracy`) also lives here: it ranks the canonical
captions of all candidate combinations, so it is the CLIP-side counterpart of the ruler.

Two image-set metrics that need no attribute labels:
- `grid_texture` / `texture_ratio`: the share of an image set's spectral power at the
  block-lattice frequencies a 2x2 folding UNet (and the cascade above it) can imprint,
  against the share in true renders of the same scenes (1.0: no excess texture);
- `frechet_distance` / `kernel_distance`: the Frechet distance and the kernel (KID-style)
  distance between two image sets in the evaluator's feature space (`Evaluator.features`).
  These are FID and KID computed with our evaluator instead of Inception, so their
  values compare only with each other, never with published FIDs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import CheckpointError, load_checkpoint, load_state_into, shipped_path, weights_name
from .images import as_image_batch, resize
from .world import (BACKGROUNDS, COLORS, OBJECT_KEYS, POSITIONS, SHAPES, SIZES, WORDS,
                    ShapesWorld, canonical_caption)

SLOTS = list(POSITIONS)
SLOT_SHAPES = [None] + list(SHAPES)     # index 0: the slot is empty
WORD_CLASSES = [None] + list(WORDS)     # index 0: no word
HEAD_SIZES = {"background": len(BACKGROUNDS), "word": len(WORD_CLASSES)}
for _slot in SLOTS:
    HEAD_SIZES.update({f"{_slot}.shape": len(SLOT_SHAPES), f"{_slot}.color": len(COLORS),
                       f"{_slot}.size": len(SIZES)})


@dataclass(frozen=True)
class EvaluatorConfig:
    input_size: int = 64
    width: int = 32
    hidden: int = 256


class AttributeNet(nn.Module):
    """CNN [N, 3, S, S] -> logits per head {name: [N, classes]}."""

    def __init__(self, config: EvaluatorConfig = EvaluatorConfig()):
        super().__init__()
        w = config.width
        self.config = config

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())

        # 64 -> 32 -> 16 -> 8 -> 4: cheap on a CPU, and the 4x4 map keeps where things are
        self.features = nn.Sequential(block(3, w, 2), block(w, w, 1), block(w, 2 * w, 2),
                                      block(2 * w, 2 * w, 1), block(2 * w, 4 * w, 2),
                                      block(4 * w, 4 * w, 2))
        flat = 4 * w * (config.input_size // 16) ** 2
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(flat, config.hidden), nn.SiLU())
        self.heads = nn.ModuleDict({k.replace(".", "_"): nn.Linear(config.hidden, n)
                                    for k, n in HEAD_SIZES.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(self.features((x - 0.5) / 0.25))
        return {k: self.heads[k.replace(".", "_")](h) for k in HEAD_SIZES}


def encode_labels(attrs_list: list[dict]) -> dict[str, torch.Tensor]:
    """Attribute dicts -> class indices per head [N] (-100 where a head is undefined)."""
    labels = {k: torch.full((len(attrs_list),), -100, dtype=torch.long) for k in HEAD_SIZES}
    for i, attrs in enumerate(attrs_list):
        labels["background"][i] = list(BACKGROUNDS).index(attrs.get("background", "white"))
        labels["word"][i] = WORD_CLASSES.index(attrs.get("word"))
        objects = attrs["objects"] if "objects" in attrs else [attrs]
        for slot in SLOTS:
            labels[f"{slot}.shape"][i] = 0
        for obj in objects:
            slot = obj["position"]
            labels[f"{slot}.shape"][i] = SLOT_SHAPES.index(obj["shape"])
            labels[f"{slot}.color"][i] = list(COLORS).index(obj["color"])
            labels[f"{slot}.size"][i] = list(SIZES).index(obj["size"])
    return labels


def evaluator_loss(logits: dict, labels: dict) -> torch.Tensor:
    """Cross-entropy summed over the heads and the labelled examples, divided by the batch
    size: the expected loss per image. Heads without a label in an example (an empty slot's
    colour, no word) add nothing; and because every example is weighted alike, the mean of
    the losses of a batch's slices equals the loss of the whole batch, so a run split over
    processes takes the same steps as one process."""
    n = next(iter(labels.values())).shape[0]
    return sum(F.cross_entropy(logits[k], labels[k], ignore_index=-100, reduction="sum") for k in HEAD_SIZES) / n


@torch.no_grad()
def in_chunks(fn, images, size: int, device, batch_size: int = 256) -> list:
    """fn applied to images [N, 3, H, W] (or PIL / numpy) resized to size x size, batch_size
    at a time on `device`; its outputs (tensors or dicts of them) moved to the CPU, in order."""
    x = as_image_batch(images)
    outs = []
    for i in range(0, len(x), batch_size):
        out = fn(resize(x[i:i + batch_size], size).to(device))
        outs.append({k: v.cpu() for k, v in out.items()} if isinstance(out, dict) else out.cpu())
    return outs


class Evaluator:
    """Predicts the attributes of images of the shapes world (independent of CLIP)."""

    def __init__(self, net: AttributeNet, device: str | torch.device = "cpu"):
        self.net = net.to(device).eval()
        self.device = torch.device(device)

    def logits(self, images, batch_size: int = 256) -> dict[str, torch.Tensor]:
        outs = in_chunks(self.net, images, self.net.config.input_size, self.device, batch_size)
        return {k: torch.cat([o[k] for o in outs]) for k in HEAD_SIZES}

    def features(self, images, batch_size: int = 256) -> torch.Tensor:
        """The evaluator's penultimate features [N, hidden] of images [N, 3, H, W]: the space
        in which `frechet_distance` and `kernel_distance` compare image sets."""
        embed = lambda x: self.net.trunk(self.net.features((x - 0.5) / 0.25))  # noqa: E731
        return torch.cat(in_chunks(embed, images, self.net.config.input_size, self.device, batch_size)).double()

    def predict(self, images, objects: int | None = None) -> list[dict]:
        """One attribute dict per image, in the world's form.

        objects=None reads the number of objects from the image (a flat dict for one,
        {"objects": [...]} for two or more); objects=1 or 2 forces that many (the most
        confident slots), which is how generated images of a known kind are judged.
        """
        if objects not in (None, 1, 2):
            raise ValueError(f"objects must be None, 1 or 2, got {objects!r}")
        logits = self.logits(images)
        occupied = 1 - torch.stack([logits[f"{s}.shape"].softmax(-1)[:, 0] for s in SLOTS], 1)
        out = []
        for i in range(occupied.shape[0]):
            if objects is None:
                slots = [j for j in range(len(SLOTS)) if occupied[i, j] > 0.5]
                slots = slots or [int(occupied[i].argmax())]
            else:
                slots = sorted(occupied[i].topk(objects).indices.tolist())
            objs = []
            for j in slots:
                s = SLOTS[j]
                shape_logits = logits[f"{s}.shape"][i, 1:]  # an occupied slot: best real shape
                objs.append({"shape": SHAPES[int(shape_logits.argmax())],
                             "color": list(COLORS)[int(logits[f"{s}.color"][i].argmax())],
                             "size": list(SIZES)[int(logits[f"{s}.size"][i].argmax())],
                             "position": s})
            scene = {"background": list(BACKGROUNDS)[int(logits["background"][i].argmax())],
                     "word": WORD_CLASSES[int(logits["word"][i].argmax())]}
            out.append({**objs[0], **scene} if len(objs) == 1 else {"objects": objs, **scene})
        return out


def new_evaluator(config: EvaluatorConfig = EvaluatorConfig()) -> Evaluator:
    return Evaluator(AttributeNet(config))


def load_evaluator(name: str = "shapes", device: str | torch.device = "cpu"):
    """A shipped evaluator ("shapes", "emoji") or one of our evaluator checkpoints (a path).
    The config stored in the file says which world's ruler it is."""
    name = weights_name(name, "evaluator")
    path = Path(name) if name.endswith(".safetensors") else shipped_path(f"evaluator/{name}")
    tensors, config, _ = load_checkpoint(path, "evaluator")
    try:
        if "concepts" in config:       # the emoji world's ruler
            from .emoji_eval import EmojiEvaluator, EmojiEvaluatorConfig, EmojiNet

            net = EmojiNet(EmojiEvaluatorConfig(**config))
            wrap = EmojiEvaluator
        else:
            net, wrap = AttributeNet(EvaluatorConfig(**config)), Evaluator
    except TypeError as err:
        raise CheckpointError(f"{path}: config does not describe an evaluator ({err})") from err
    load_state_into(net, tensors, str(path))
    return wrap(net, device=device)


# ----------------------------------------------------------------------------- metrics

def _objects(attrs: dict) -> list[dict]:
    return attrs["objects"] if "objects" in attrs else [attrs]


def attribute_matches(predicted: list[dict], truth: list[dict],
                      keys=OBJECT_KEYS) -> dict[str, np.ndarray]:
    """Per-attribute correctness [N] (bool) of one-object predictions against the truth.
    Keys a truth dict does not state are marked NaN (not judged)."""
    out = {}
    for key in keys:
        vals = []
        for p, t in zip(predicted, truth, strict=True):
            p0, t0 = _objects(p)[0], _objects(t)[0]
            vals.append(np.nan if key not in t0 else float(p0.get(key) == t0[key]))
        out[key] = np.array(vals)
    return out


def attribute_accuracy(predicted: list[dict], truth: list[dict], keys=OBJECT_KEYS) -> dict[str, float]:
    """Mean accuracy per attribute of one-object scenes, plus 'all' (every stated key right)."""
    m = attribute_matches(predicted, truth, keys)
    acc = {k: float(np.nanmean(v)) for k, v in m.items() if not np.all(np.isnan(v))}
    stacked = np.stack([np.nan_to_num(v, nan=1.0) for v in m.values()])
    acc["all"] = float(stacked.min(0).mean())
    return acc


def scene_accuracy(predicted: list[dict], truth: list[dict]) -> dict[str, float]:
    """Accuracy of every object's shape/colour/size by position (one- or two-object
    scenes), of the background and of the word."""
    hits = {k: [] for k in ("shape", "color", "size", "position", "background", "word")}
    for p, t in zip(predicted, truth, strict=True):
        by_pos = {o["position"]: o for o in _objects(p)}
        for obj in _objects(t):
            q = by_pos.get(obj["position"], {})
            hits["position"].append(obj["position"] in by_pos)
            for k in ("shape", "color", "size"):
                hits[k].append(q.get(k) == obj[k])
        hits["background"].append(p.get("background") == t.get("background"))
        hits["word"].append(p.get("word") == t.get("word"))
    return {k: float(np.mean(v)) for k, v in hits.items()}


def zero_shot_accuracy(clip, images, attributes: list[dict], split: str = "all") -> dict[str, float]:
    """CLIP zero-shot accuracy of one-object images by ranking the canonical captions of
    every (shape, colour, size, position) combination, read off per attribute.
    Returns {attribute: accuracy, "exact": whole-caption accuracy}."""
    combos = ShapesWorld.combinations(split)
    probs = clip.zero_shot(images, [canonical_caption(c) for c in combos])
    best = [combos[j] for j in probs.argmax(-1).tolist()]
    acc = attribute_accuracy(best, attributes)
    acc["exact"] = acc.pop("all")
    return acc


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) between two batches in [0, 1] (over all pixels)."""
    mse = ((a.float() - b.float()) ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * float(np.log10(1.0 / mse))


def pixel_diversity(samples: torch.Tensor) -> float:
    """Mean RMS pixel distance between samples of the same condition.
    samples: [S, N, 3, H, W] (S samples for each of N conditions), in [0, 1]."""
    s = samples.shape[0]
    if s < 2:
        raise ValueError("pixel_diversity needs at least two samples per condition")
    dists = [((samples[i] - samples[j]) ** 2).flatten(1).mean(1).sqrt()
             for i in range(s) for j in range(i + 1, s)]
    return float(torch.stack(dists).mean())


# ----------------------------------------------------------------------------- text to image

def text_prompts(n: int, seed: int, split: str = "train", p_size: float = 0.5,
                 p_position: float = 0.5) -> tuple[list[str], list[dict]]:
    """n fresh one-object captions and the attributes each states: shape and colour always,
    size and position each with probability p_size / p_position. split "train" draws the
    shape x colour pairs seen in training, "held_out" the six never seen, "all" any."""
    rng = np.random.default_rng([seed, 71])
    combos = ShapesWorld.combinations(split)
    captions, stated = [], []
    for _ in range(n):
        c = combos[rng.integers(len(combos))]
        attrs = {"shape": c["shape"], "color": c["color"]}
        if rng.random() < p_size:
            attrs["size"] = c["size"]
        if rng.random() < p_position:
            attrs["position"] = c["position"]
        captions.append(canonical_caption(attrs))
        stated.append(attrs)
    return captions, stated


def text_to_image_scores(predicted: list[dict], stated: list[dict]) -> dict[str, float]:
    """Accuracy of one-object generations against the attributes their captions state:
    per attribute (over the captions that state it), "shape+color" (both right) and
    "all" (every stated attribute right)."""
    m = attribute_matches(predicted, stated)
    out = {k: float(np.nanmean(v)) for k, v in m.items() if not np.all(np.isnan(v))}
    out["shape+color"] = float(np.mean(m["shape"] * m["color"]))
    out["all"] = float(np.stack([np.nan_to_num(v, nan=1.0) for v in m.values()]).min(0).mean())
    return out


def attribute_entropy(predicted: list[list[dict]], key: str) -> float:
    """Mean entropy (bits) of one attribute across the samples of each caption.
    predicted: [N captions][S samples] of one-object predictions."""
    ents = []
    for samples in predicted:
        _, counts = np.unique([_objects(p)[0][key] for p in samples], return_counts=True)
        q = counts / counts.sum()
        ents.append(float(-(q * np.log2(q)).sum()))
    return float(np.mean(ents))


# ----------------------------------------------------------------------------- image-set metrics

def imprint_periods(resolution: int, stage_resolutions: tuple, fold: int = 2) -> list[int]:
    """Pixel periods at `resolution` that 2x2-style folding (`fold`) at each stage resolution
    can imprint: a stage at r px folds with period `fold` px, which later upsampling by
    resolution / r stretches to fold * resolution / r px. E.g. (128, (32, 64, 128)) -> [2, 4, 8]."""
    periods = {fold * resolution // r for r in stage_resolutions if r <= resolution and resolution % r == 0}
    return sorted(p for p in periods if 2 <= p <= resolution)


def _lattice_mask(size: int, period: int) -> torch.Tensor:
    """[size, size] bool: the 2-D frequencies (ky, kx), both multiples of size / period and
    not both zero, where a pattern repeating in every period x period block puts all its power."""
    on = torch.zeros(size, dtype=torch.bool)
    on[::size // period] = True
    mask = on[:, None] & on[None, :]
    mask[0, 0] = False
    return mask


def grid_texture(images: torch.Tensor, periods) -> dict[int, float]:
    """Share of the (mean-removed) spectral power of images [N, 3, H, W] at the frequencies
    of each period's block lattice: {period: share in [0, 1]}, pooled over the set.
    A texture that repeats in every p x p block (what a UNet on p/2-folded pixels leaves:
    the same offsets at the same place in every block) puts its power on the lattice
    (k H / p, l W / p); natural content spreads over all frequencies, so the renders' share
    there is small and an excess over it is the texture."""
    x = as_image_batch(images).double()
    n, _, h, w = x.shape
    if h != w:
        raise ValueError(f"grid_texture needs square images, got {h}x{w}")
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().pow(2).sum(1)           # [N, H, W], channels summed
    total = power.sum()
    if total == 0:
        raise ValueError("grid_texture: the images are flat (no spectral power to share)")
    out = {}
    for p in periods:
        if h % p:
            raise ValueError(f"period {p} does not divide the image size {h}")
        out[int(p)] = float(power[:, _lattice_mask(h, p)].sum() / total)
    return out


def texture_ratio(generated: torch.Tensor, reference: torch.Tensor, periods) -> dict[int, float]:
    """grid_texture of generated images over that of reference images (true renders of the
    same scenes), per period: 1.0 means no excess texture, 50 fifty times the renders' share."""
    g, r = grid_texture(generated, periods), grid_texture(reference, periods)
    return {p: g[p] / r[p] for p in g}


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, D] and [M, D]:
    |mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)). Needs N, M >= 2."""
    from scipy import linalg

    a, b = feats_a.double().numpy(), feats_b.double().numpy()
    if len(a) < 2 or len(b) < 2:
        raise ValueError("frechet_distance needs at least two images in each set")
    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(ca @ cb, disp=False)
    covmean = covmean.real
    return float(mu @ mu + np.trace(ca) + np.trace(cb) - 2 * np.trace(covmean))


def kernel_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Unbiased squared MMD with KID's kernel k(x, y) = (x . y / D + 1)^3 between two feature
    sets [N, D] and [M, D] (Binkowski et al. 2018); 0 in expectation for the same
    distribution, unlike the Frechet distance, which is biased upwards at small N.
    Both sets are first scaled by one factor that gives the second (reference) set a mean
    x . x / D of 1, so the cubic kernel sees unit-scale features whatever the layer's scale."""
    a, b = feats_a.double(), feats_b.double()
    n, m, d = len(a), len(b), a.shape[1]
    if n < 2 or m < 2:
        raise ValueError("kernel_distance needs at least two images in each set")
    scale = (b.pow(2).sum(1).mean() / d).sqrt().clamp_min(1e-12)
    a, b = a / scale, b / scale
    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    return float((kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
                 + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1)) - 2 * kab.mean())

"""The paper's manipulations and its typographic attack on emoji, measured with the emoji
evaluator (independent of CLIP) on fresh images whose truth is known.

    pipe, evaluator, world = load_unclip("emoji"), load_evaluator("emoji"), EmojiWorld()
    variation_scores(pipe, evaluator, world.sample(50, seed=1), etas=(0, 0.5, 1))
    text_diff_scores(pipe, evaluator, world, minimal_pairs(world, "colour", n=50, seed=1))
    attack = typographic_attack_images(world, apples(world), words=("phone",))
    typographic_attack_scores(pipe.clip, world, attack)

Every function takes the images or pairs it measures (drawn from a seed by the caller), so a
figure can be re-measured on images no test has seen by changing one number.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .emoji import WORD_POSITIONS, draw_word
from .evaluate import pixel_diversity, psnr
from .images import resize
from .probes import label_probs
from .world import Batch


def _mean(x) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def kept_attributes(preds: list[dict], truth: list[dict]) -> dict[str, np.ndarray]:
    """Per image: concept in the evaluator's top 5, concept top-1, style, skin tone kept."""
    return {"concept_top5": np.array([t["concept"] in p["top_concepts"] for p, t in zip(preds, truth, strict=True)]),
            "concept_top1": np.array([t["concept"] == p["concept"] for p, t in zip(preds, truth)]),
            "style": np.array([t["style"] == p["style"] for p, t in zip(preds, truth)]),
            "skin_tone": np.array([t.get("skin_tone") == p["skin_tone"] for p, t in zip(preds, truth)])}


# ----------------------------------------------------------------------------- variations

def variation_scores(pipe, evaluator, batch, n: int = 4, etas=(0.0, 0.25, 0.5, 0.75, 1.0), seed: int = 0,
                     latent=None) -> dict[float, dict]:
    """For each eta: the share of variations (z_i and the inverted x_T, eta of fresh noise)
    keeping the source's concept (evaluator top-5 and top-1), its style, concept and style
    together, and the pixel diversity of the n variations of one source. Base resolution.
    batch: the sources (a Batch); latent: their pipe.encode(batch.images), if at hand."""
    latent = latent if latent is not None else pipe.encode(batch.images)
    truth = [a for a in batch.attributes for _ in range(n)]
    out = {}
    for eta in etas:
        images = pipe.variations(latent=latent, n=n, eta=float(eta), seed=seed, upsample=False)
        kept = kept_attributes(evaluator.predict(images), truth)
        per_source = images.view(-1, n, *images.shape[1:]).transpose(0, 1)      # [n, N, 3, r, r]
        out[float(eta)] = {"concept_top5": _mean(kept["concept_top5"]), "concept_top1": _mean(kept["concept_top1"]),
                           "style": _mean(kept["style"]),
                           "concept_and_style": _mean(kept["concept_top5"] & kept["style"]),
                           "diversity": pixel_diversity(per_source) if n > 1 else 0.0}
    return out


# ----------------------------------------------------------------------------- text diffs

def _reached(pred: dict, pair) -> bool:
    """Whether the evaluator reads the pair's target in what it changed."""
    if pair.changed == "concept":
        return pred["concept"] == pair.target["concept"]
    return pred[pair.changed] == pair.target[pair.changed]


def _unchanged_kept(pred: dict, pair) -> bool:
    """Whether what the edit should leave alone is still there: the style for a concept
    edit, the concept (top 5) and style for a skin-tone edit, the concept for a style edit."""
    concept = pair.source["concept"] in pred["top_concepts"]
    if pair.changed == "concept":
        return pred["style"] == pair.source["style"]
    if pair.changed == "skin_tone":
        return concept and pred["style"] == pair.source["style"]
    return concept


def text_diff_scores(pipe, evaluator, world, pairs, thetas=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5), seed: int = 0,
                     batch_size: int = 64) -> dict:
    """Text diffs from_caption -> to_caption on the pairs' source images (emoji_pairs), x_T
    the inverted one, at base resolution.

    Returns {"per_theta": {theta: {"target": share read as the target, "kept": share keeping
    what should not change}}, "edited": share reaching the target at some theta <= max(thetas)
    while keeping the rest there, "first_theta": mean smallest such theta over the edited,
    "psnr_theta0": PSNR (dB) at theta = 0 against the input (the inversion's round trip)}."""
    thetas = [float(t) for t in thetas]
    images = world.render([p.source for p in pairs], pipe.clip.image_size)
    decoded = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        decoded.append(pipe.text_diff(images[i:i + batch_size], from_caption=[p.from_caption for p in chunk],
                                      to_caption=[p.to_caption for p in chunk], thetas=thetas, seed=seed,
                                      upsample=False))
    decoded = torch.cat(decoded)                                           # [N * k, 3, r, r], theta fastest
    k, n = len(thetas), len(pairs)
    preds = evaluator.predict(decoded)
    hit = np.array([_reached(preds[i * k + j], p) for i, p in enumerate(pairs) for j in range(k)]).reshape(n, k)
    kept = np.array([_unchanged_kept(preds[i * k + j], p) for i, p in enumerate(pairs) for j in range(k)]
                    ).reshape(n, k)
    success = hit & kept
    first = [thetas[int(np.argmax(row))] for row in success if row.any()]
    out = {"per_theta": {th: {"target": _mean(hit[:, j]), "kept": _mean(kept[:, j])} for j, th in enumerate(thetas)},
           "edited": _mean(success.any(1)), "first_theta": _mean(first)}
    if 0.0 in thetas:
        j = thetas.index(0.0)
        out["psnr_theta0"] = psnr(decoded.view(n, k, *decoded.shape[1:])[:, j], resize(images, pipe.base_resolution))
    return out


# ----------------------------------------------------------------------------- the typographic attack

@dataclass
class AttackImages:
    """Emoji with a word written over them (the paper's Figure 6: an apple labelled "iPod")."""

    clean: torch.Tensor        # [N, 3, R, R]
    attacked: torch.Tensor     # [N, 3, R, R] the same emoji with the word on a label across them
    sources: list[dict]        # the emoji's attributes (no word)
    words: list[str]           # the word written on each
    labels: list[list[str]]    # each image's zero-shot label set: its own concept's name first, then
                               # the name the word points at, then distractors
    control: bool = False      # True: words that name nothing in the label set (same occlusion)


def word_concept(world, word: str) -> str:
    """The concept a written word points at: the one named exactly by it, else the one with
    the shortest name whose own word it is ("phone" -> mobile phone)."""
    owners = [h for h, c in world.concepts.items() if c.get("word") == word]
    if not owners:
        raise ValueError(f"no emoji concept has the word {word!r}; words that point at one: "
                         f"{sorted({c['word'] for c in world.concepts.values() if c.get('word')})[:20]} ...")
    exact = [h for h in owners if world.concepts[h]["name"] == word]
    return exact[0] if exact else min(owners, key=lambda h: (len(world.concepts[h]["name"]), h))


def apples(world, split: str = "all") -> list[dict]:
    """The red and the green apple in every style that draws them (the paper's Granny Smith)."""
    allowed = set(world.pairs(split))
    return [world.attributes(c, s) for c in (world.concept("red apple"), world.concept("green apple"))
            for s in world.styles if (c, s) in allowed]


def attack_words(world, n: int, seed: int, avoid: set[str] = frozenset()) -> list[str]:
    """n distinct written words that each point at a concept (word_concept), drawn from a seed."""
    words = sorted({c["word"] for c in world.concepts.values() if c.get("word")} - set(avoid))
    rng = np.random.default_rng(seed)
    return [words[j] for j in rng.choice(len(words), n, replace=False)]


def typographic_attack_images(world, sources: list[dict], words: list[str], scale: float = 1.0,
                              contrast: float = 1.0, distractors: int = 4, seed: int = 0,
                              control_words: list[str] | None = None, resolution: int = 64) -> AttackImages:
    """Every source with every word written over it (a label across its lower part, as in
    the data), the letters' size and ink contrast as given (emoji.draw_word). Label sets: the
    source's name, the word's concept's name, and `distractors` other concept names drawn
    from the seed. control_words (one per word): written instead, the label sets unchanged,
    so the image is covered as much but the word points at no label."""
    if control_words is not None and len(control_words) != len(words):
        raise ValueError(f"give one control word per word: {len(words)} words, {len(control_words)} control words")
    rng = np.random.default_rng(seed)
    concepts = list(world.concepts)
    clean, attacked, srcs, written, labels = [], [], [], [], []
    for source in sources:
        base = world.render_array({k: source[k] for k in ("concept", "style", "skin_tone")}, resolution)
        for j, word in enumerate(words):
            pointed = word_concept(world, word)
            if pointed == source["concept"]:
                continue                              # the word names the emoji itself: no attack
            others = [h for h in concepts if h not in (source["concept"], pointed)]
            chosen = [others[i] for i in rng.choice(len(others), distractors, replace=False)]
            shown = control_words[j] if control_words is not None else word
            clean.append(base)
            attacked.append(draw_word(base, shown, WORD_POSITIONS[0], scale=scale, contrast=contrast))
            srcs.append(source)
            written.append(shown)
            labels.append([world.caption({"concept": h}) for h in (source["concept"], pointed, *chosen)])
    if not clean:
        raise ValueError("no image to attack: every word names its own emoji")
    as_tensor = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    return AttackImages(as_tensor(clean), as_tensor(attacked), srcs, written, labels, control_words is not None)


def typographic_attack_scores(clip, attack: AttackImages) -> dict[str, float]:
    """Zero-shot CLIP over each image's label set, clean and attacked: accuracy, the mean
    probability of the emoji's own label and of the word's label, and the attack's success:
    the share of images read right when clean whose top label becomes the word's concept.
    "success_by_chance": that share if the errors the label causes fell evenly on the wrong
    labels ((1 - attacked accuracy on those images) / (labels - 1)). For a control, "success"
    is the share flipping to the label the control word does *not* name."""
    p_clean, p_att = label_probs(clip, attack.clean, attack.labels), label_probs(clip, attack.attacked,
                                                                                     attack.labels)
    right, kept, flipped = p_clean.argmax(-1) == 0, p_att.argmax(-1) == 0, p_att.argmax(-1) == 1
    n_labels = len(attack.labels[0])
    return {"clean_accuracy": float(right.float().mean()), "attacked_accuracy": float(kept.float().mean()),
            "p_own_clean": float(p_clean[:, 0].mean()), "p_own_attacked": float(p_att[:, 0].mean()),
            "p_word_clean": float(p_clean[:, 1].mean()), "p_word_attacked": float(p_att[:, 1].mean()),
            "success": float(flipped[right].float().mean()) if right.any() else float("nan"),
            "success_by_chance": float((~kept[right]).float().mean()) / (n_labels - 1) if right.any() else float("nan"),
            "images": len(right)}


def attack_decodings(pipe, evaluator, world, attack: AttackImages, samples: int = 2, seed: int = 0) -> dict:
    """What the decoder draws from the attacked images' z_i (fresh x_T): the share of
    samples the evaluator reads as the emoji itself (top-5 and top-1), as the word's concept
    (top-1), and with the word written on them; the same for the clean images ("*_clean")."""
    pointed = [world.concept(labels[1]) for labels in attack.labels]
    out = {}
    for suffix, images in (("", attack.attacked), ("_clean", attack.clean)):
        z = pipe.clip.encode_image(images).repeat_interleave(samples, 0)
        preds = evaluator.predict(pipe.decode(z, seed=seed, upsample=False))
        own = [s["concept"] for s in attack.sources for _ in range(samples)]
        word_concepts = [c for c in pointed for _ in range(samples)]
        words = [w for w in attack.words for _ in range(samples)]
        out[f"own_top5{suffix}"] = _mean([o in p["top_concepts"] for p, o in zip(preds, own)])
        out[f"own_top1{suffix}"] = _mean([o == p["concept"] for p, o in zip(preds, own)])
        out[f"word_concept{suffix}"] = _mean([c == p["concept"] for p, c in zip(preds, word_concepts)])
        out[f"word_written{suffix}"] = _mean([w == p["word"] for p, w in zip(preds, words)])
    return out


# ----------------------------------------------------------------------------- text to image

def concept_captions(world, n: int, seed: int, split: str = "train", style_named: bool = False,
                     all_styles: bool = False) -> tuple[list[str], list[dict]]:
    """n captions of distinct (concept, style) pairs of a split, drawn from seed, and their truth.

    The caption is the concept's everyday name ('red apple'); with style_named, the style in
    words too ('red apple in the fluent style'), which a held-out pair needs (without it the
    caption names a concept seen in other styles). all_styles: only concepts drawn in all four
    styles (for the style entropy, whose maximum is then 2 bits)."""
    pairs = world.pairs(split)
    if all_styles:
        pairs = [p for p in pairs if len(world.styles_of(p[0])) == len(world.styles)]
    if not 0 < n <= len(pairs):
        raise ValueError(f"n: give 1 to {len(pairs)} captions for the {split!r} split, got {n!r}")
    rng = np.random.default_rng([seed, 17])
    truth = [world.attributes(*pairs[i]) for i in rng.choice(len(pairs), size=n, replace=False)]
    captions = [world.caption({"concept": a["concept"], **({"style": a["style"]} if style_named else {})})
                for a in truth]
    return captions, truth


def text_to_image_scores(pipe, evaluator, world, captions: list[str], truth: list[dict], prior: str = "diffusion",
                         seed: int = 0, style_named: bool = False, batch_size: int = 64, **generate) -> dict:
    """Text to image at base resolution, read by the evaluator: the share of images showing
    the caption's concept (top-1, top-5) and, if the caption names the style, that style.
    prior: as pipe.generate ("diffusion", "autoregressive", "z_t", "caption"); generate:
    further pipe.generate arguments (guidance, steps, decoder_caption)."""
    images = torch.cat([pipe.generate(captions[i:i + batch_size], prior=prior, seed=seed + i, upsample=False,
                                      **generate) for i in range(0, len(captions), batch_size)])
    kept = kept_attributes(evaluator.predict(images), truth)
    out = {"concept_top1": _mean(kept["concept_top1"]), "concept_top5": _mean(kept["concept_top5"]),
           "images": len(captions)}
    if style_named:
        out["style"] = _mean(kept["style"])
    return out


def style_entropy(pipe, evaluator, captions: list[str], truth: list[dict], samples: int = 8, prior: str = "diffusion",
                  seed: int = 0, **generate) -> dict:
    """The paper's diversity claim on style: each caption (naming no style) drawn `samples`
    times; the evaluator's style of each sample; the entropy (bits) of the styles drawn per
    caption, averaged (2 bits: all four styles equally often; 0: always the same one), with
    the share of samples showing the caption's concept (truth, top 5) and the samples' pixel
    diversity beside it."""
    from .evaluate import attribute_entropy

    repeated = [c for c in captions for _ in range(samples)]
    images = torch.cat([pipe.generate(repeated[i:i + 64], prior=prior, seed=seed + i, upsample=False, **generate)
                        for i in range(0, len(repeated), 64)])
    preds = evaluator.predict(images)
    per_caption = [preds[i * samples:(i + 1) * samples] for i in range(len(captions))]
    concepts = [t["concept"] for t in truth for _ in range(samples)]
    return {"style_entropy_bits": attribute_entropy(per_caption, "style"),
            "concept_top5": _mean([c in p["top_concepts"] for p, c in zip(preds, concepts)]),
            "diversity": pixel_diversity(images.view(len(captions), samples, *images.shape[1:]).transpose(0, 1)),
            "captions": len(captions), "samples": samples}


def uniform_entropy(categories: int, samples: int, trials: int = 20_000, seed: int = 0) -> float:
    """The entropy (bits) style_entropy measures for a perfect generator that picks each of
    `categories` styles equally often, drawn `samples` times: below log2(categories), as a
    handful of draws rarely splits evenly (4 styles, 8 samples: about 1.7 of the 2 bits)."""
    draws = np.random.default_rng(seed).integers(0, categories, size=(trials, samples))
    q = np.stack([(draws == c).mean(1) for c in range(categories)], 1)          # [trials, categories]
    logq = np.log2(q, out=np.zeros_like(q), where=q > 0)                          # 0 log 0 = 0
    return abs(float(-(q * logq).sum(1).mean()))                                  # abs: no -0.0


def frechet_to_true(evaluator, generated: torch.Tensor, true: torch.Tensor) -> float:
    """Fréchet distance in the evaluator's features between generated and true images (both
    [N, 3, R, R]; the reference figures, BENCHMARKS.md: 300 + 300 images at 32 px, true
    against true about 660, detail lost about 900, every emoji in one style about 1070)."""
    from .evaluate import frechet_distance

    return frechet_distance(evaluator.features(true), evaluator.features(generated))


# ----------------------------------------------------------------------------- interpolations

def interpolation_pairs(world, n_pairs: int, seed: int, split: str = "train"):
    """(batch_a, batch_b): n_pairs fresh emoji a and, for each, an emoji b of another concept
    drawn in another style (no skin tones, no words), both inside the split."""
    a = world.sample(n_pairs, split=split, seed=seed, skin_tone_prob=0.0)
    rng = np.random.default_rng([seed, 23])
    pairs = world.pairs(split)
    chosen = []
    for attrs in a.attributes:
        while True:
            concept, style = pairs[rng.integers(len(pairs))]
            if concept != attrs["concept"] and style != attrs["style"]:
                chosen.append(world.attributes(concept, style))
                break
    b = Batch(world.render(chosen, a.images.shape[-1]), [world.caption(c) for c in chosen], chosen,
              [{} for _ in chosen])
    return a, b


def interpolation_scores(pipe, evaluator, batch_a, batch_b, steps: int = 5, modes=("slerp", "fixed", "random"),
                         seed: int = 0) -> dict[str, list[dict]]:
    """Along slerp(z_a, z_b, theta), per step and x_T mode ("slerp": the two inverted x_T
    slerped too; "fixed": one noise for the row; "random": fresh noise per image): the share
    of decodings showing a's concept (top 5), b's, neither, and a's and b's style. Base
    resolution."""
    latents = None
    out = {}
    for mode in modes:
        if mode == "slerp" and latents is None:
            latents = (pipe.encode(batch_a.images), pipe.encode(batch_b.images))
        images = pipe.interpolate(batch_a.images, batch_b.images, steps=steps, x_T=mode, seed=seed, upsample=False,
                                  latents=latents if mode == "slerp" else None)
        preds = evaluator.predict(images)
        rows = []
        for j, theta in enumerate(torch.linspace(0, 1, steps).tolist()):
            p = preds[j::steps]
            ka, kb = kept_attributes(p, batch_a.attributes), kept_attributes(p, batch_b.attributes)
            rows.append({"theta": round(theta, 3), "a": _mean(ka["concept_top5"]), "b": _mean(kb["concept_top5"]),
                         "neither": _mean(~ka["concept_top5"] & ~kb["concept_top5"]),
                         "a_style": _mean(ka["style"]), "b_style": _mean(kb["style"])})
        out[mode] = rows
    return out


# ----------------------------------------------------------------------------- PCA reconstructions

def fit_pca(clip, world, n: int = 4000, seed: int = 0, batch: int = 500):
    """PCA (latents.EmbeddingPCA) of the z_i of n emoji drawn from the whole world (every
    style, skin tones, no words)."""
    from .latents import EmbeddingPCA

    z = [clip.encode_image(world.sample(min(batch, n - i), split="all", seed=seed + i).images)
         for i in range(0, n, batch)]
    return EmbeddingPCA.fit(torch.cat(z))


def ink_colour(images: torch.Tensor, white: float = 0.9) -> torch.Tensor:
    """The mean colour of each image's ink (pixels not near white): [N, 3, H, W] -> [N, 3]."""
    ink = (images.min(1, keepdim=True).values < white).float()                  # [N, 1, H, W]
    return (images * ink).sum((2, 3)) / ink.sum((2, 3)).clamp_min(1)


def pca_scores(pipe, evaluator, world, pca, batch, ks=(1, 2, 4, 8, 16, 32, 64, 128), seed: int = 0,
               colour_tolerance: float = 0.12, return_images: int = 0):
    """Which attributes come back first when z_i is rebuilt from its first k principal
    components and decoded (the paper's Figure 7), on the emoji of `batch` (one x_T per image
    held fixed across k, so only the embedding changes). Per k, the share of decodings with
    the source's group (of the evaluator's concept), concept (top 5 and top 1), style, skin
    tone, and colour (the mean ink colour within colour_tolerance, RMS over RGB in [0, 1]).
    Returns {k: {attribute: share}} (and the first return_images decodings per k,
    [len(ks), m, 3, r, r])."""
    d, r = pipe.defaults, pipe.base_resolution
    z = pipe.clip.encode_image(batch.images)
    x_T = torch.randn((z.shape[0], 3, r, r), generator=torch.Generator().manual_seed(seed))
    truth = batch.attributes
    source_ink = ink_colour(resize(batch.images, r))
    table, shown = {}, []
    for k in ks:
        images = pipe.decode(pca.reconstruct(z, k), x_T=x_T, steps=d.decoder_steps, guidance=d.decoder_guidance,
                             clip_x0=True, upsample=False)
        preds = evaluator.predict(images)
        kept = kept_attributes(preds, truth)
        colour = ((ink_colour(images) - source_ink).pow(2).mean(1).sqrt() < colour_tolerance).numpy()
        table[int(k)] = {"group": _mean([world.concepts[p["concept"]]["group"] == world.concepts[t["concept"]]["group"]
                                         for p, t in zip(preds, truth)]),
                         "concept_top5": _mean(kept["concept_top5"]), "concept_top1": _mean(kept["concept_top1"]),
                         "style": _mean(kept["style"]), "skin_tone": _mean(kept["skin_tone"]),
                         "colour": _mean(colour)}
        if return_images:
            shown.append(images[:return_images])
    return (table, torch.stack(shown)) if return_images else table

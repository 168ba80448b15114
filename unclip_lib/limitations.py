"""The limitations the paper documents (its section 7), measured in the shapes world.

- Attribute binding: CLIP embeddings do not say which attribute belongs to which object,
  so "a red circle and a blue square" may come out as a blue circle and a red square.
  `binding_scores` counts the swaps and mixes of unCLIP against the caption-only decoder,
  and `clip_binding_accuracy` asks whether CLIP itself tells a caption from its swap.
- Spelling: the decoder is asked to write a word; `spelling_scores` reads what it wrote.
- Detail at the base resolution: the decoder works at a low resolution and the upsamplers
  only add detail they can infer; `base_resolution_detail` measures what is lost by
  rendering the true scene at the base resolution and upsampling it.

    pipe, evaluator = load_unclip("shapes"), load_evaluator("shapes")
    binding_scores(pipe, evaluator, n=100, seed=0)
    spelling_scores(pipe, evaluator, n=50, seed=0)
    base_resolution_detail(pipe, evaluator, n=100, seed=0)

Every function draws fresh scenes from its seed; the evaluator (independent of CLIP)
reads the results.
"""
from __future__ import annotations

import numpy as np

from .evaluate import _objects, attribute_matches
from .images import resize
from .world import Batch, ShapesWorld, canonical_caption

BINDING_OUTCOMES = ("correct", "swapped", "colour leaked", "shape doubled", "wrong count", "wrong")
# the outcomes that use only the caption's shapes and colours, but bind them wrongly
MISBOUND = ("swapped", "colour leaked", "shape doubled")


def binding_scenes(n: int, seed: int, resolution: int = 64) -> Batch:
    """n fresh two-object scenes (seen shape x colour pairs, no words) whose objects differ
    in both shape and colour, so that a swap of colours is a visible, countable error."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    world = ShapesWorld(seed=seed)
    keep: list[int] = []
    batch = None
    for tries in range(1, 6):
        batch = world.sample(3 * n * tries, objects=2, resolution=resolution, split="train", word_prob=0.0)
        keep = [i for i, a in enumerate(batch.attributes)
                if len({o["shape"] for o in a["objects"]}) == 2 and len({o["color"] for o in a["objects"]}) == 2]
        if len(keep) >= n:
            break
    keep = keep[:n]
    return Batch(batch.images[keep], [batch.captions[i] for i in keep], [batch.attributes[i] for i in keep],
                 [batch.details[i] for i in keep] if batch.details else [])


def binding_caption(attrs: dict, swap: bool = False) -> str:
    """'two shapes: a red circle and a blue square' (shape and colour only); swap=True
    gives each object the other's colour."""
    objs = [{"shape": o["shape"], "color": o["color"]} for o in attrs["objects"]]
    if swap:
        objs = [{"shape": objs[0]["shape"], "color": objs[1]["color"]},
                {"shape": objs[1]["shape"], "color": objs[0]["color"]}]
    return canonical_caption({"objects": objs})


def binding_outcome(predicted: dict, truth: dict) -> str:
    """How a two-object image relates to its caption's (shape, colour) pairs:
    "correct" both pairs right; "swapped" the right shapes and colours, on the wrong
    objects; "colour leaked" both stated shapes, but one stated colour on both; "shape
    doubled" one stated shape twice (colours stated); "wrong count" not two objects;
    "wrong" a shape or colour the caption does not state."""
    t = [(o["shape"], o["color"]) for o in truth["objects"]]
    p = [(o["shape"], o["color"]) for o in _objects(predicted)]
    if len(p) != len(t):
        return "wrong count"                                # an object missing (or one too many)
    if sorted(p) == sorted(t):
        return "correct"
    if sorted(p) == sorted([(t[0][0], t[1][1]), (t[1][0], t[0][1])]):
        return "swapped"
    shapes, colours = {s for s, _ in t}, {c for _, c in t}
    if not all(s in shapes and c in colours for s, c in p):
        return "wrong"
    return "colour leaked" if {s for s, _ in p} == shapes else "shape doubled"


def clip_binding_accuracy(clip, images, attributes: list[dict]) -> dict[str, float]:
    """Does CLIP bind? For true two-object images: the share whose own caption scores above
    the caption with the colours swapped ("accuracy", 0.5 is chance) and the mean cosine
    margin; for reference, the same against a caption where one colour is replaced by a
    colour absent from the scene ("substitution_accuracy", "substitution_margin"), a
    difference CLIP needs no binding to see."""
    from .world import COLORS

    z_i = clip.encode_image(images)
    right = clip.encode_text([binding_caption(a) for a in attributes])
    swapped = clip.encode_text([binding_caption(a, swap=True) for a in attributes])
    rng = np.random.default_rng(len(attributes))
    substituted = []
    for a in attributes:
        used = {o["color"] for o in a["objects"]}
        other = str(rng.choice([c for c in COLORS if c not in used]))
        substituted.append(binding_caption({"objects": [dict(a["objects"][0], color=other), a["objects"][1]]}))
    substitute = clip.encode_text(substituted)
    margin = (z_i * right).sum(-1) - (z_i * swapped).sum(-1)
    sub_margin = (z_i * right).sum(-1) - (z_i * substitute).sum(-1)
    return {"accuracy": float((margin > 0).float().mean()), "margin": float(margin.mean()),
            "substitution_accuracy": float((sub_margin > 0).float().mean()),
            "substitution_margin": float(sub_margin.mean())}


def binding_scores(pipe, evaluator, n: int = 100, conditionings=("diffusion", "caption", "image"),
                   seed: int = 0, upsample: bool = True, decoder_caption: bool | None = None) -> dict:
    """Generate "two shapes: a red circle and a blue square" for n fresh scenes with each
    conditioning and classify every image (binding_outcome). Conditionings are those of
    pipe.generate, plus "image": decode the CLIP embedding of the true render itself, the
    control that separates what the prior loses from what z_i never held. decoder_caption:
    whether the decoder reads the caption beside z_i (pipe.generate's; "image" decodes with
    the true render's caption then).

    Returns {conditioning: {outcome: share (BINDING_OUTCOMES), "misbound": swapped + colour
    leaked + shape doubled, "shapes": share with both shapes right, "colors": share with both
    colours right}, "clip": clip_binding_accuracy on the true
    renders}. Judged at full resolution by default: two objects at the 32 px base are
    small for the evaluator."""
    scenes = binding_scenes(n, seed)
    captions = [binding_caption(a) for a in scenes.attributes]
    out: dict = {"clip": clip_binding_accuracy(pipe.clip, scenes.images, scenes.attributes)}
    for cond in conditionings:
        if cond == "image":
            read = pipe.defaults.decoder_caption if decoder_caption is None else decoder_caption
            images = pipe.decode(pipe.clip.encode_image(scenes.images), seed=seed, upsample=upsample,
                                 captions=captions if read else None)
        else:
            images = pipe.generate(captions, prior=cond, seed=seed, upsample=upsample,
                                   decoder_caption=decoder_caption)
        preds = evaluator.predict(images)                    # the evaluator counts the objects too
        outcomes = [binding_outcome(p, t) for p, t in zip(preds, scenes.attributes)]
        row = {o: float(np.mean([x == o for x in outcomes])) for o in BINDING_OUTCOMES}
        row["misbound"] = sum(row[o] for o in MISBOUND)
        for key in ("shape", "color"):
            row[f"{key}s"] = float(np.mean([sorted(o[key] for o in _objects(p)) == sorted(o[key] for o in t["objects"])
                                            for p, t in zip(preds, scenes.attributes)]))
        out[cond] = row
    return out


def spelling_prompts(n: int, seed: int, kind: str = "own") -> tuple[list[str], list[dict]]:
    """n one-object captions asking for a written word: "a red circle with the word 'red'
    written on it". kind "own": the word names the object's own shape or colour, as every
    word in the training images does; "other": a world word naming neither."""
    if kind not in ("own", "other"):
        raise ValueError(f"kind must be 'own' or 'other', got {kind!r}")
    rng = np.random.default_rng([seed, 17])
    combos = ShapesWorld.combinations("train")
    captions, stated = [], []
    for _ in range(n):
        c = combos[rng.integers(len(combos))]
        if kind == "own":
            word = c["shape"] if rng.random() < 0.6 else c["color"]
        else:
            word = str(rng.choice([w for w in ShapesWorld.words if w not in (c["shape"], c["color"])]))
        attrs = {"shape": c["shape"], "color": c["color"], "word": word}
        captions.append(canonical_caption(attrs))
        stated.append(attrs)
    return captions, stated


def spelling_scores(pipe, evaluator, n: int = 50, seed: int = 0, prior: str = "diffusion") -> dict[str, dict]:
    """Ask for a written word and read what was written, at full resolution.

    Returns {kind: {"word": share showing exactly the asked word, "any_word": share showing
    some word, "object": share with the stated shape and colour}} for kind "own" and
    "other" (spelling_prompts), plus "renders": the evaluator's word accuracy on true
    renders of the "own" captions (a large object in the centre), the ceiling of what it
    can read."""
    out = {}
    for kind in ("own", "other"):
        captions, stated = spelling_prompts(n, seed, kind)
        images = pipe.generate(captions, prior=prior, seed=seed)
        preds = evaluator.predict(images, objects=1)
        m = attribute_matches(preds, stated, ("shape", "color"))
        out[kind] = {"word": float(np.mean([p["word"] == s["word"] for p, s in zip(preds, stated)])),
                     "any_word": float(np.mean([p["word"] is not None for p in preds])),
                     "object": float(np.mean(m["shape"] * m["color"]))}
        if kind == "own":
            scenes = ShapesWorld(seed=seed).render([dict(s, size="large", position="center") for s in stated],
                                                   pipe.resolution)
            out["renders"] = {"word": float(np.mean([p["word"] == s["word"] for p, s in
                                                     zip(evaluator.predict(scenes, objects=1), stated)]))}
    return out


def detail_scenes(n: int, seed: int, resolution: int) -> Batch:
    """n fresh one-object scenes with a written word, rendered at `resolution`."""
    world = ShapesWorld(seed=seed)
    batch = world.sample(2 * n, objects=1, resolution=resolution, split="all", word_prob=1.0)
    keep = [i for i, a in enumerate(batch.attributes) if a["word"]][:n]
    return Batch(batch.images[keep], [batch.captions[i] for i in keep], [batch.attributes[i] for i in keep],
                 [batch.details[i] for i in keep])


def base_resolution_detail(pipe, evaluator, n: int = 100, seed: int = 0) -> dict[str, dict]:
    """What the base resolution loses: the same fresh scenes (one object, a written word)
    rendered at full resolution, and rendered at the decoder's base resolution then
    brought to full resolution by the diffusion upsamplers or by bicubic resizing.

    Returns {"full" | "upsampled" | "bicubic": {"shape", "color", "word", "small_shape":
    accuracy (evaluator), "psnr": dB against the full-resolution render}}."""
    from .evaluate import psnr

    scenes = detail_scenes(n, seed, pipe.resolution)
    world = ShapesWorld(seed=seed)
    low = world.render(scenes.attributes, pipe.base_resolution, details=scenes.details)
    versions = {"full": scenes.images, "upsampled": pipe.upsample(low, seed=seed),
                "bicubic": resize(low, pipe.resolution)}
    small = np.array([a["size"] == "small" for a in scenes.attributes])
    out = {}
    for name, images in versions.items():
        preds = evaluator.predict(images, objects=1)
        m = attribute_matches(preds, scenes.attributes, ("shape", "color"))
        out[name] = {"shape": float(m["shape"].mean()), "color": float(m["color"].mean()),
                     "small_shape": float(m["shape"][small].mean()) if small.any() else float("nan"),
                     "word": float(np.mean([p["word"] == a["word"] for p, a in zip(preds, scenes.attributes)])),
                     "psnr": psnr(images, scenes.images)}
    return out

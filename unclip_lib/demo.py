"""`make demo`: a gallery of the world and of what the shipped models see, in outputs/.

Writes PNGs and one index.html, and prints what it wrote. Sections: the world, CLIP
zero-shot, text to image with both priors, variations, an interpolation and text diffs, then
the emoji world (its styles, its CLIP naming held-out styles, the typographic attack);
later stages add theirs here.
"""
from __future__ import annotations

import html
import time
from pathlib import Path

import torch

from .clip import load_clip
from .evaluate import load_evaluator, zero_shot_accuracy
from .viz import grid, show_images
from .world import ShapesWorld, canonical_caption


DEMO_PROMPTS = ["a red circle", "a small blue star on the left", "a large green triangle",
                "a yellow square at the bottom", "a small purple diamond on the right", "an orange cross",
                "a large black circle at the top", "a pink star"]


def _caption_grid(pipe, prompts: list[str], samples: int, seed: int, path: Path, size: float,
                  prior: str = "diffusion") -> torch.Tensor:
    """`samples` images per prompt through the whole stack, saved as a grid of two prompts a
    row (titled by each prompt's first image) to path. Returns them [len(prompts) * samples, 3, R, R]."""
    captions = [c for c in prompts for _ in range(samples)]
    images = pipe.generate(captions, prior=prior, seed=seed, progress=True)
    fig = show_images(images, [c if i % samples == 0 else "" for i, c in enumerate(captions)],
                      ncols=samples * 2, size=size, fontsize=8)
    fig.savefig(path, dpi=110)
    return images


def _text_to_image(out: Path, seed: int, samples: int = 4) -> list[tuple[str, str, str]]:
    """Text-to-image grids, one row per prompt, for both priors."""
    from .pipeline import load_unclip

    pipe = load_unclip("shapes")
    sections = []
    for prior in ("diffusion", "autoregressive"):
        t = time.time()
        name = f"text_to_image_{prior}.png"
        images = _caption_grid(pipe, DEMO_PROMPTS, samples, seed, out / name, size=1.6, prior=prior)
        sections.append((f"Text to image, {prior} prior", name,
                         f"{len(DEMO_PROMPTS)} prompts x {samples} samples at {images.shape[-1]} px: "
                         f"prior -> decoder -> two upsamplers ({time.time() - t:.0f} s on this machine)."))
    return sections


def _manipulations(out: Path, seed: int) -> list[tuple[str, str, str]]:
    """Variations, an interpolation and text diffs of fresh scenes, at full resolution."""
    from .experiments import interpolation_pairs, source_scenes
    from .images import resize
    from .pipeline import load_unclip

    pipe = load_unclip("shapes", priors=())
    sections = []
    t = time.time()
    scenes = source_scenes(3, seed)
    var = pipe.variations(scenes.images, n=4, eta=1.0, seed=seed)            # [3 * 4, ...]
    tiles = torch.cat([torch.cat([resize(scenes.images[i:i + 1], var.shape[-1]), var[4 * i:4 * i + 4]])
                       for i in range(3)])
    fig = show_images(tiles, [label for _ in range(3) for label in ["input"] + ["variation"] * 4], ncols=5, size=1.6)
    fig.savefig(out / "variations.png", dpi=110)
    sections.append(("Variations", "variations.png", "Each input's bipartite latent (CLIP z_i, DDIM-inverted x_T)"
                     f" decoded 4 times with eta = 1 ({time.time() - t:.0f} s)."))

    t = time.time()
    pair, images_b, _ = interpolation_pairs(2, seed)
    path = pipe.interpolate(pair.images, images_b, steps=6, x_T="slerp", seed=seed)
    fig = show_images(path, [f"theta {j / 5:.1f}" for _ in range(2) for j in range(6)], ncols=6, size=1.6)
    fig.savefig(out / "interpolation.png", dpi=110)
    sections.append(("Interpolations", "interpolation.png", "slerp from one image's z_i to another's, with x_T "
                     f"slerped between their inversions ({time.time() - t:.0f} s)."))

    t = time.time()
    src = ShapesWorld(seed=seed).render([{"shape": "circle", "color": "red", "size": "large", "position": "center"},
                                         {"shape": "square", "color": "blue", "size": "small", "position": "left"}],
                                        64)
    thetas = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    rows = pipe.text_diff(src, ["a red circle", "a blue square"], ["a green circle", "a blue star"],
                          thetas=thetas, seed=seed)
    titles = [f"{e}: theta {th}" if j == 0 else f"theta {th}" for e in ("red -> green circle", "blue square -> star")
              for j, th in enumerate(thetas)]
    fig = show_images(rows, titles, ncols=len(thetas), size=1.6)
    fig.savefig(out / "text_diffs.png", dpi=110)
    sections.append(("Text diffs", "text_diffs.png", "z_i slerped towards norm(z_t - z_t0) of two captions, decoded "
                     f"with the inverted x_T fixed; theta 0 is the input ({time.time() - t:.0f} s)."))
    return sections


def _emoji(out: Path, seed: int) -> list[tuple[str, str, str]]:
    """The emoji world: its four styles, its CLIP's zero-shot names, and the typographic attack."""
    from .emoji import EmojiWorld
    from .emoji_experiments import apples, typographic_attack_images, typographic_attack_scores
    from .probes import label_probs

    world = EmojiWorld(seed=seed)
    sections = []
    shown = ["red apple", "cat face", "thumbs up", "rocket", "sunflower", "hot beverage"]
    attrs = [world.attributes(c, s) for c in shown for s in world.styles if s in world.styles_of(c)]
    grid(world.render(attrs, 64), nrow=8, scale=2).save(out / "emoji_world.png")
    sections.append(("The emoji world", "emoji_world.png", "Six emoji in the four open-licensed styles (Noto, "
                     "Twemoji, OpenMoji, Fluent): 1,633 concepts, 12,761 images (data/emoji/LICENSE.md)."))

    clip = load_clip("emoji")
    batch = world.sample(16, resolution=64, split="held_out", seed=seed)
    names = [c["name"] for c in world.concepts.values()]
    probs = clip.zero_shot(batch.images, names)
    titles = [f"CLIP: {names[j][:20]} ({p:.0%})\ntrue: {a['name'][:20]}"
              for p, j, a in zip(*probs.max(-1), batch.attributes)]
    fig = show_images(batch.images, titles, ncols=8, size=1.9, fontsize=8)
    fig.savefig(out / "emoji_zero_shot.png", dpi=110)
    sections.append(("Emoji CLIP zero-shot, held-out styles", "emoji_zero_shot.png",
                     "Emoji drawn in a style the emoji CLIP never saw them in; its best of all "
                     f"{len(names):,} names with its probability, and the true name (right on "
                     f"{sum(names[j] == a['name'] for j, a in zip(probs.argmax(-1).tolist(), batch.attributes))} of "
                     f"{len(batch.images)})."))

    words = ["phone", "pizza", "dog", "rocket"]
    attack = typographic_attack_images(world, apples(world)[::2], words, seed=seed)
    scores = typographic_attack_scores(clip, attack)
    p = label_probs(clip, attack.attacked, attack.labels)
    titles = [f"{labels[0]} {q[0]:.0%}\n{labels[1]} {q[1]:.0%}" for labels, q in zip(attack.labels, p.tolist())]
    fig = show_images(attack.attacked, titles, ncols=len(words), size=1.9, fontsize=8)
    fig.savefig(out / "emoji_attack.png", dpi=110)
    sections.append(("The typographic attack on emoji (paper Figure 6)", "emoji_attack.png",
                     "Apples with another emoji's word written on them; the emoji CLIP's probability of the apple "
                     f"and of the word's emoji among 6 labels. Fooled on {scores['success']:.0%} of these "
                     f"{scores['images']} images (BENCHMARKS.md, 'The emoji world', measures it at scale)."))
    return sections


def _emoji_stack(out: Path, seed: int) -> list[tuple[str, str, str]]:
    """The emoji stack at work: text to image (the emoji priors), variations of emoji, text
    diffs on them, and what the decoder draws from the attacked apples' z_i."""
    from .emoji import EmojiWorld
    from .emoji_experiments import apples, typographic_attack_images
    from .images import resize
    from .pipeline import load_unclip

    pipe, world = load_unclip("emoji"), EmojiWorld(seed=seed)
    sections = []
    t = time.time()
    _caption_grid(pipe, ["red apple", "cat face", "rocket", "red heart in the fluent style"], 4, seed,
                  out / "emoji_text_to_image.png", size=1.1)
    sections.append(("Text to image on emoji", "emoji_text_to_image.png",
                     "Four samples per caption: z_i from the emoji diffusion prior, then the emoji decoder and the "
                     f"upsamplers ({time.time() - t:.0f} s; notebook 14 measures it)."))

    t = time.time()
    sources = world.sample(3, split="train", seed=seed, skin_tone_prob=0.0)
    var = pipe.variations(sources.images, n=4, eta=1.0, seed=seed)                     # [3 * 4, 3, R, R]
    tiles = torch.cat([torch.cat([resize(sources.images[i:i + 1], var.shape[-1]), var[4 * i:4 * i + 4]])
                       for i in range(3)])
    titles = [label for a in sources.attributes
              for label in [f"{a['name'][:18]} ({a['style']})"] + ["variation"] * 4]
    fig = show_images(tiles, titles, ncols=5, size=1.6, fontsize=8)
    fig.savefig(out / "emoji_variations.png", dpi=110)
    sections.append(("Variations of emoji (paper Figure 3)", "emoji_variations.png",
                     "Each emoji's bipartite latent (emoji CLIP z_i, DDIM-inverted x_T) decoded 4 times with eta = 1 "
                     f"({time.time() - t:.0f} s)."))

    t = time.time()
    edits = [("red apple", "noto", None, "red apple", "green apple"),
             ("thumbs up", "twemoji", "light", "thumbs up: light skin tone", "thumbs up: dark skin tone")]
    src = world.render([world.attributes(world.concept(c), s, tone) for c, s, tone, _, _ in edits], 64)
    thetas = [0.0, 0.2, 0.35, 0.5]
    rows = pipe.text_diff(src, [e[3] for e in edits], [e[4] for e in edits], thetas=thetas, seed=seed)
    titles = [f"{e[3]} -> {e[4]}" if j == 0 else f"theta {th}" for e in edits for j, th in enumerate(thetas)]
    fig = show_images(rows, titles, ncols=len(thetas), size=1.8, fontsize=8)
    fig.savefig(out / "emoji_text_diffs.png", dpi=110)
    sections.append(("Text diffs on emoji (paper Figure 5)", "emoji_text_diffs.png",
                     "z_i slerped towards norm(z_t - z_t0) of two captions, decoded with the inverted x_T fixed; "
                     f"theta 0 is the input ({time.time() - t:.0f} s)."))

    t = time.time()
    attack = typographic_attack_images(world, apples(world)[::2], ["phone"], seed=seed)
    drawn = pipe.decode(pipe.clip.encode_image(attack.attacked), seed=seed)
    fig = show_images(torch.cat([resize(attack.attacked, drawn.shape[-1]), drawn]),
                      [f"{a['name']} + 'phone'" for a in attack.sources] + ["decoded"] * len(drawn),
                      ncols=len(drawn), size=1.8, fontsize=8)
    fig.savefig(out / "emoji_attack_decoded.png", dpi=110)
    sections.append(("What the decoder draws from a labelled apple", "emoji_attack_decoded.png",
                     "Apples with 'phone' written on them (top) and the emoji decoder's drawing of their z_i "
                     f"(bottom; notebook 13 measures it, {time.time() - t:.0f} s)."))
    return sections


def make_demo(out: str | Path = "outputs", seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    world = ShapesWorld(seed=seed)
    sections = []

    one = world.sample(32, objects=1, resolution=64, word_prob=0.3)
    two = world.sample(16, objects=2, resolution=64, word_prob=0.3)
    grid(torch.cat([one.images, two.images]), nrow=8, scale=2).save(out / "world.png")
    sections.append(("The shapes world", "world.png",
                     "48 random scenes (one and two objects, some with a written word)."))

    clip = load_clip("shapes")
    evaluator = load_evaluator("shapes")
    batch = world.sample(16, objects=1, resolution=64)
    combos = ShapesWorld.combinations()
    probs = clip.zero_shot(batch.images, [canonical_caption(c) for c in combos])
    titles = [f"CLIP: {canonical_caption(combos[j])} ({p:.0%})"
              for p, j in zip(*probs.max(-1))]
    fig = show_images(batch.images, titles, ncols=8, size=1.9)
    fig.savefig(out / "zero_shot.png", dpi=110)
    sections.append(("CLIP zero-shot", "zero_shot.png",
                     "The shipped tiny CLIP ranks all 480 canonical captions for each image; "
                     "its top caption and probability are shown."))

    sections += _text_to_image(out, seed)
    sections += _manipulations(out, seed)
    sections += _emoji(out, seed)
    sections += _emoji_stack(out, seed)

    check = world.sample(500, objects=1, resolution=64)
    zs = zero_shot_accuracy(clip, check.images, check.attributes)
    preds = evaluator.predict(check.images, objects=1)
    ev = {k: sum(p[k] == t[k] for p, t in zip(preds, check.attributes)) / len(preds)
          for k in ("shape", "color", "size", "position")}
    table = "".join(f"<tr><td>{k}</td><td>{zs[k]:.1%}</td><td>{ev[k]:.1%}</td></tr>"
                    for k in ("shape", "color", "size", "position"))
    page = ["<html><head><meta charset='utf-8'><title>unclip-lab demo</title></head><body>",
            "<h1>unclip-lab demo</h1>"]
    for title, img, text in sections:
        page += [f"<h2>{html.escape(title)}</h2><p>{html.escape(text)}</p><img src='{img}'>"]
    page += ["<h2>Accuracy on 500 fresh one-object images</h2>",
             "<table border=1><tr><th>attribute</th><th>CLIP zero-shot</th><th>evaluator</th></tr>",
             table, "</table></body></html>"]
    (out / "index.html").write_text("\n".join(page))
    names = ", ".join(f"{out}/{img}" for _, img, _ in sections)
    print(f"wrote {names} and {out}/index.html in {time.time() - t0:.0f} s")
    print("accuracy on 500 fresh one-object images (CLIP zero-shot / evaluator):")
    for k in ("shape", "color", "size", "position"):
        print(f"  {k:9s} {zs[k]:6.1%} / {ev[k]:6.1%}")
    return out / "index.html"

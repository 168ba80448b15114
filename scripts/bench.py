"""Measure the figures of BENCHMARKS.md and print them as Markdown.

    python scripts/bench.py --seed 2024            # any seed: the figures must hold
    python scripts/bench.py --seed 7 > /tmp/b.md
    python scripts/bench.py --speed --write BENCHMARKS.md      # what `make bench` runs
    python scripts/bench.py --all --write BENCHMARKS.md        # every section (about 5 hours)

--write FILE replaces, in FILE, the block of each section measured between its markers
<!-- bench:NAME --> and <!-- /bench:NAME --> (appending the block if FILE has none), and
leaves everything else in FILE (the discussion of the figures) as it is.

Figures: rendering rate (one core), CLIP zero-shot accuracy on fresh one-object images
and on the held-out combinations, evaluator accuracy at 32/64/128 px, training time of the
shipped weights (read from their metadata).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from unclip_lib import ShapesWorld, load_clip, load_evaluator
from unclip_lib.checkpoints import SHIPPED, read_metadata, shipped_names, shipped_path
from unclip_lib.evaluate import attribute_accuracy, scene_accuracy, zero_shot_accuracy
from unclip_lib.images import resize

KEYS = ("shape", "color", "size", "position")


def machine() -> str:
    """The CPU model, cores, RAM, torch threads and version: where a figure was measured."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
        ram = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        ram = ""
    return (f"{cpu} ({platform.machine()}, {os.cpu_count()} cores{ram}), {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}")


def render_rate(n: int = 2000) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    world = ShapesWorld(seed=0)
    world.sample(50)
    t = time.perf_counter()
    world.sample(n, resolution=64)
    rate = n / (time.perf_counter() - t)
    torch.set_num_threads(threads)
    return rate


def train_seconds(extra: dict) -> float:
    """Training wall-clock seconds from a shipped file's metadata (older files: session_seconds),
    including the training of the weights it was warm-started from."""
    return float(extra.get("train_seconds", extra.get("session_seconds", 0))) + float(extra.get("init_train_seconds", 0))


def training_rows(named_modules) -> list[str]:
    """Parameter count and training of shipped models, read from their metadata."""
    out = ["", "| model | parameters | training (shipped weights) |", "|---|---|---|"]
    for name, module in named_modules:
        meta = read_metadata(shipped_path(name))["extra"]
        train = meta["train"]
        out.append(f"| {name} | {sum(p.numel() for p in module.parameters()) / 1e6:.2f} M | "
                   + (f"{meta['init_steps']} + " if meta.get("init_steps") else "")
                   + f"{train['steps']} steps x batch {train['batch_size']}, "
                   f"{train_seconds(meta) / 60:.0f} min |")
    return out


def upsampler_rows(pipe, seed: int, m: int, world: str = "shapes", resolutions: tuple = (32, 64, 128)) -> list[str]:
    """PSNR of each upsampler stage against bicubic on m fresh renders of a world (only the
    stages whose input and output sizes are among the world's `resolutions`)."""
    from unclip_lib.train import upsampler_validation

    d = pipe.defaults
    out = ["", f"Upsamplers on {m} fresh renders (input: the true low-res render, blurred as in training for "
           "32 -> 64; clean, and after the BSR mix, for 64 -> 128):", "",
            "| stage | input | steps | PSNR | bicubic PSNR |", "|---|---|---|---|---|"]
    for up, steps, (lo, hi, deg) in zip(pipe.upsamplers, d.upsampler_steps, ((32, 64, "blur"), (64, 128, "bsr"))):
        if lo not in resolutions or hi not in resolutions:
            out.append(f"| {lo} -> {hi} | not measured: no true {hi} px renders here | {steps} | - | - |")
            continue
        r = upsampler_validation(up, lo, hi, deg, n=m, steps=steps, seed=seed + 9, world=world)
        inputs = (("", "blurred" if deg == "blur" else "clean"),) + ((("_bsr", "BSR-degraded"),) if deg == "bsr" else ())
        for suffix, name in inputs:
            out.append(f"| {lo} -> {hi} | {name} | {steps} | {r['psnr' + suffix]:.2f} dB | "
                       f"{r['bicubic_psnr' + suffix]:.2f} dB |")
    return out


def decoder_section(seed: int, n: int) -> list[str]:
    """Reconstruction from z_i, diversity, inversion, upsamplers, speed."""
    from unclip_lib.evaluate import pixel_diversity, psnr
    from unclip_lib.pipeline import load_unclip

    pipe = load_unclip("shapes")
    ev = load_evaluator("shapes")
    d = pipe.defaults
    out = ["", f"Decoder: reconstruction from z_i alone (fresh x_T, {d.decoder_steps} {d.sampler} steps, "
           f"guidance {d.decoder_guidance}), {n} fresh one-object images, judged by the evaluator "
           "against the evaluator's reading of the source:", ""]
    batch = ShapesWorld(seed=seed).sample(n, objects=1, resolution=64)
    z_i = pipe.clip.encode_image(batch.images)
    truth = ev.predict(batch.images, objects=1)
    first = pipe.decode(z_i, seed=seed, upsample=False)
    acc = attribute_accuracy(ev.predict(first, objects=1), truth)
    out += ["| shape | colour | size | position | all four |", "|---|---|---|---|---|",
            "| " + " | ".join(f"{acc[k]:.1%}" for k in KEYS + ("all",)) + " |", ""]
    k = min(n, 100)
    second = pipe.decode(z_i[:k], seed=seed + 1, upsample=False)
    source = resize(batch.images[:k], 32)
    out.append(f"Pixel diversity (RMS distance, 32 px, {k} images): between two decodings of the same z_i "
               f"(different x_T) {pixel_diversity(torch.stack([first[:k], second])):.3f}; between a decoding "
               f"and its source {pixel_diversity(torch.stack([first[:k], source])):.3f}.")

    m = min(n, 32)
    base = ShapesWorld(seed=seed + 5).sample(m, objects=1, resolution=32)
    z = pipe.clip.encode_image(ShapesWorld(seed=seed + 5).render(base.attributes, 64, details=base.details))
    out += ["", f"DDIM inversion at 32 px, {d.inversion_steps} steps, {m} fresh images; the reconstruction decodes "
            "the inverted x_T with the same guidance (default: "
            f"{d.inversion_guidance}):", "", "| method | guidance | model calls per image | PSNR |", "|---|---|---|---|"]
    for guidance in (d.inversion_guidance, d.decoder_guidance):
        for refine in (0, d.inversion_refine):
            x_T = pipe.invert(base.images, z_i=z, refine=refine, guidance=guidance)
            rec = pipe.decode(z, x_T=x_T, eta=0.0, upsample=False, guidance=guidance)
            calls = (d.inversion_steps * (1 + refine) + d.inversion_steps) * (1 if guidance == 1.0 else 2)
            name = "naive DDIM inversion" if refine == 0 else f"fixed-point refined ({refine} iterations/step)"
            out.append(f"| {name} | {guidance} | {calls} (inversion + decoding) | {psnr(rec, base.images):.1f} dB |")

    out += upsampler_rows(pipe, seed, m)
    full = pipe.decode(z_i[:100], seed=seed)
    facc = attribute_accuracy(ev.predict(full, objects=1), truth[:100])
    out.append("\nFull-resolution (128 px) decodings of 100 images, attributes kept from the source: "
               + ", ".join(f"{k} {facc[k]:.1%}" for k in KEYS) + ".")

    z16 = z_i[:16]
    pipe.decode(z16[:2], seed=0)
    t = time.perf_counter()
    pipe.decode(z16, seed=0)
    sec = time.perf_counter() - t
    out.append(f"\nSpeed: 16 images at 128 px (base {d.decoder_steps} steps with guidance, upsamplers "
               f"{d.upsampler_steps[0]} + {d.upsampler_steps[1]} steps) in {sec:.1f} s.")
    out += training_rows((("decoder/shapes", pipe.decoder), ("upsampler/up64", pipe.upsamplers[0]),
                          ("upsampler/up128", pipe.upsamplers[1])))
    return out


def prior_section(seed: int, n: int) -> list[str]:
    """Text to image with both priors, prior cosine, the importance-of-the-prior table."""
    from unclip_lib.evaluate import text_prompts, text_to_image_scores
    from unclip_lib.pipeline import load_unclip
    from unclip_lib.train import prior_validation

    pipe = load_unclip("shapes")
    ev = load_evaluator("shapes")
    d = pipe.defaults
    out = ["", f"Text to image, one-object captions (shape and colour always stated, size and position each "
           f"half the time), {n} fresh captions of seen shape x colour pairs and {n // 2} of the six held-out "
           f"pairs; full 128 px output judged by the evaluator; prior guidance {d.prior_guidance}, "
           f"{d.prior_steps} diffusion-prior steps, best of {d.prior_candidates}; decoder "
           f"{d.decoder_steps} steps, guidance {d.decoder_guidance}:", "",
           "| prior | captions | shape | colour | size | position | shape+colour | all stated | seconds/image |",
           "|---|---|---|---|---|---|---|---|---|"]
    cols = ("shape", "color", "size", "position", "shape+color", "all")
    for prior in ("diffusion", "autoregressive"):
        for split, k in (("train", n), ("held_out", n // 2)):
            captions, stated = text_prompts(k, seed=seed + len(split), split=split)
            t = time.perf_counter()
            images = torch.cat([pipe.generate(captions[i:i + 100], prior=prior, seed=seed + i)
                                for i in range(0, k, 100)])
            sec = (time.perf_counter() - t) / k
            sc = text_to_image_scores(ev.predict(images, objects=1), stated)
            name = "seen pairs" if split == "train" else "held-out pairs"
            out.append(f"| {prior} | {name} ({k}) | " + " | ".join(f"{sc[c]:.1%}" for c in cols) + f" | {sec:.2f} |")
    # the ablation of the paper's decoder conditioning: z_i alone, the caption not read
    captions, stated = text_prompts(n, seed=seed + len("train"), split="train")
    t = time.perf_counter()
    images = torch.cat([pipe.generate(captions[i:i + 100], seed=seed + i, decoder_caption=False)
                        for i in range(0, n, 100)])
    sec = (time.perf_counter() - t) / n
    sc = text_to_image_scores(ev.predict(images, objects=1), stated)
    out += [f"| diffusion, decoder without the caption | seen pairs ({n}) | "
            + " | ".join(f"{sc[c]:.1%}" for c in cols) + f" | {sec:.2f} |",
            "", "The decoder reads the caption beside z_i (the paper's conditioning; the default) except in the "
            "last row, which decodes z_i alone with the same captions and seeds as the first."]

    out += ["", "Prior quality: mean cosine of the sampled z_i with the true image's z_i (fresh training-"
            "distribution scenes and captions, 500 each), against z_t itself:", "",
            "| prior | cos(sampled z_i, z_i) | cos(z_t, z_i) |", "|---|---|---|"]
    for prior in ("diffusion", "autoregressive"):
        r = prior_validation(pipe.priors[prior], pipe.clip, n=500, seed=seed + 3)
        out.append(f"| {prior} | {r['cos_sample']:.3f} | {r['cos_z_t']:.3f} |")

    from unclip_lib.fidelity import CONDITIONING_NAMES, conditioning_scores

    k, s = min(n, 200) // 4, 4
    out += ["", f"Importance of the prior (paper section 5.1): the same decoder ({d.decoder_steps} steps, guidance "
            f"{d.decoder_guidance}) fed the caption alone, the text embedding z_t in place of z_i, or a prior's "
            f"z_i; {k} fresh captions (shape and colour stated, size and position each half the time), {s} "
            "samples each at the base 32 px. Accuracy over all samples; diversity across the samples of a "
            "caption: RMS pixel distance and the entropy (bits) of size (max 1) and position (max 2.32) over "
            "the captions that leave them open, and of the never-stated background (max 2):", "",
            "| decoder conditioned on | shape+colour | all stated | pixel diversity | size entropy | "
            "position entropy | background entropy |", "|---|---|---|---|---|---|---|"]
    for cond, r in conditioning_scores(pipe, ev, n_captions=k, samples=s, seed=seed + 11).items():
        out.append(f"| {CONDITIONING_NAMES[cond]} | {r['shape+color']:.1%} | {r['all']:.1%} | {r['diversity']:.3f} | "
                   f"{r['size_entropy']:.2f} | {r['position_entropy']:.2f} | {r['background_entropy']:.2f} |")

    out += training_rows(tuple((f"prior/{p}", pipe.priors[p]) for p in ("diffusion", "autoregressive")))
    return out


def manipulation_section(seed: int, n: int) -> list[str]:
    """Variations, text diffs and interpolations on the bipartite latent (base resolution)."""
    from unclip_lib.experiments import interpolation_scores, source_scenes, text_diff_scores, variation_scores
    from unclip_lib.pipeline import load_unclip

    pipe = load_unclip("shapes", priors=())
    ev = load_evaluator("shapes")
    d = pipe.defaults
    etas = (0.0, 0.25, 0.5, 0.75, 1.0)
    out = ["", f"Variations of {n} fresh one-object images, 3 each: the bipartite latent (z_i, refined DDIM "
           f"inversion x_T) decoded with {d.inversion_steps} DDIM steps at each eta, guidance "
           f"{d.inversion_guidance}; share of variations keeping the source's attribute (evaluator), and "
           "pixel diversity (RMS distance between the variations of one source, 32 px):", "",
           "| eta | shape | colour | size | shape+colour | pixel diversity |", "|---|---|---|---|---|---|"]
    scenes = source_scenes(n, seed)
    latent = pipe.encode(scenes.images)
    for eta, r in variation_scores(pipe, ev, n=3, etas=etas, seed=seed, batch=scenes, latent=latent).items():
        out.append(f"| {eta} | {r['shape']:.1%} | {r['color']:.1%} | {r['size']:.1%} | {r['shape+color']:.1%} "
                   f"| {r['diversity']:.3f} |")
    thetas = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    for key, other in (("color", "shape"), ("shape", "colour")):
        r = text_diff_scores(pipe, ev, key, thetas=thetas, seed=seed + 1, batch=scenes, latent=latent)
        name = "colour" if key == "color" else "shape"
        out += ["", f"Text diffs of {name} on the same {n} images, each towards a random other {name} "
                f"(\"a red circle\" -> \"a {'blue circle' if key == 'color' else 'red star'}\"): share showing "
                f"the target {name}, and share keeping the {other}:", "",
                "| theta | " + " | ".join(f"{t}" for t in thetas) + " |", "|---" * (len(thetas) + 1) + "|",
                "| target | " + " | ".join(f"{v['target']:.1%}" for v in r["per_theta"].values()) + " |",
                f"| {other} kept | " + " | ".join(f"{v['kept']:.1%}" for v in r["per_theta"].values()) + " |", "",
                f"Edited (target shown and {other} kept at some theta <= 0.5): **{r['edited']:.1%}**, at a mean "
                f"first theta of {r['first_theta']:.2f}; theta = 0 reproduces the input at {r['psnr_theta0']:.1f} dB."]
    m = max(2, n // 2)
    curves = interpolation_scores(pipe, ev, n_pairs=m, steps=5, modes=("slerp", "fixed", "random"), seed=seed + 2)
    out += ["", f"Interpolations between {m} fresh pairs that differ in shape and colour (5 steps): share of "
            "images showing a's shape and colour (mean of the two) / b's:", "",
            "| x_T | " + " | ".join(f"theta {r['theta']}" for r in curves["slerp"]) + " |",
            "|---" * 6 + "|"]
    for mode, rows in curves.items():
        out.append(f"| {mode} | " + " | ".join(f"{r['a']:.0%} / {r['b']:.0%}" for r in rows) + " |")

    one = scenes.images[:1]
    pipe.encode(one)
    timings = []
    for name, fn in (("encode 1 image (CLIP + refined inversion)", lambda: pipe.encode(one)),
                     ("4 variations at 128 px", lambda: pipe.variations(one, n=4)),
                     ("text diff, 3 thetas at 128 px", lambda: pipe.text_diff(one, "a red circle", "a blue circle")),
                     ("interpolation, 5 steps at 128 px (x_T slerp)",
                      lambda: pipe.interpolate(one, scenes.images[1:2], steps=5))):
        t = time.perf_counter()
        fn()
        timings.append(f"{name} {time.perf_counter() - t:.1f} s")
    out.append("\nSpeed, end to end from a 64 px image: " + "; ".join(timings) + ".")
    return out


def probe_section(seed: int, n: int) -> list[str]:
    """PCA reconstructions decoded, typographic attacks on the tiny CLIP (and a real one if cached)."""
    from unclip_lib.pipeline import load_unclip
    from unclip_lib.probes import (attack_decodings, attack_scores, fit_embedding_pca, pca_probe, photo_attack,
                                   typographic_scenes)
    from unclip_lib.world import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES

    pipe = load_unclip("shapes", priors=())
    ev = load_evaluator("shapes")
    pca = fit_embedding_pca(pipe.clip, n=4000, seed=seed)
    ks = (1, 2, 4, 8, 16, 32, 64, pca.dim)
    cum = pca.explained.cumsum(0)
    out = ["", "PCA of the tiny CLIP's z_i (4000 world scenes): cumulative explained variance "
           + ", ".join(f"k={k}: {float(cum[k - 1]):.1%}" for k in ks[:-1]) + ".", "",
           f"PCA probe: z_i of {n} fresh one-object images rebuilt from its first k components (renormalised), "
           "decoded with one fixed x_T per image (default steps and guidance); share of decodings showing the "
           "source's attribute (evaluator):", "",
           "| k | shape | colour | size | position | background |", "|---|---|---|---|---|---|",
           "| chance | " + " | ".join(f"{1 / len(v):.1%}" for v in (SHAPES, COLORS, SIZES, POSITIONS, BACKGROUNDS))
           + " |"]
    for k, r in pca_probe(pipe, ev, pca, ks=ks, n_images=n, seed=seed).items():
        out.append(f"| {k} | " + " | ".join(f"{r[a]:.1%}" for a in ("shape", "color", "size", "position",
                                                                     "background")) + " |")
    m = 500
    out += ["", f"Typographic attacks on the tiny CLIP, {m} fresh one-object scenes per row, each with a word "
            f"naming a wrong shape (or colour); zero-shot over the {len(SHAPES)} shapes (or {len(COLORS)} colours) "
            "with the other attribute stated. Success: share of images read right when clean whose top label "
            "becomes the word; by chance: that share if the errors fell evenly on the wrong labels. Control rows "
            "write a word of the same size naming a wrong value of the other attribute (a colour word on a shape "
            "attack): the same occlusion, no misleading label. At 64 px, words of 7-8 letters are cut at the image "
            "border from size 0.25 on:", "",
            "| word names | size | contrast | accuracy clean | accuracy attacked | P(word) clean | P(word) attacked "
            "| success | success by chance |", "|---|---|---|---|---|---|---|---|---|"]
    for kind in ("shape", "color"):
        other = "colour" if kind == "shape" else "shape"
        for size, contrast, control in ((0.1, 1.0, False), (0.17, 1.0, False), (0.17, 1.0, True), (0.25, 1.0, False),
                                        (0.25, 1.0, True), (0.33, 1.0, False), (0.33, 1.0, True), (0.25, 0.4, False)):
            r = attack_scores(pipe.clip, typographic_scenes(m, seed + 7, kind, word_size=size, word_contrast=contrast,
                                                            control=control))
            name = f"control: {other} word, read as {kind}" if control else kind
            word = "- | - | -" if control else \
                f"{r['p_word_clean']:.4f} | {r['p_word_attacked']:.4f} | {r['success']:.1%}"
            out.append(f"| {name} | {size} | {contrast} | {r['clean_accuracy']:.1%} | {r['attacked_accuracy']:.1%} | "
                       f"{word} | {r['success_by_chance']:.1%} |")
    out += ["", f"What the decoder draws from attacked z_i ({n} scenes, word size 0.25, 2 samples each):", "",
            "| word names | object kept | word's meaning drawn | word written | object kept (clean) |",
            "|---|---|---|---|---|"]
    for kind in ("shape", "color"):
        r = attack_decodings(pipe, ev, typographic_scenes(n, seed + 8, kind, word_size=0.25), samples=2, seed=seed)
        out.append(f"| {kind} | {r['object']:.1%} | {r['meaning']:.1%} | {r['word']:.1%} | {r['object_clean']:.1%} |")
    try:
        real = load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k")
    except (FileNotFoundError, KeyError) as err:
        out.append(f"\nReal CLIP (ViT-B-32 / laion2b_s34b_b79k): not in the local cache on this machine, so not "
                   f"measured ({type(err).__name__}).")
    else:
        out += ["", "Real CLIP ViT-B-32 / laion2b_s34b_b79k on scikit-image's photographs, with another label's "
                "word written on a white note:", "", "| photo | word | P(true) clean | P(true) attacked | "
                "P(word) attacked | top label attacked |", "|---|---|---|---|---|---|"]
        for r in photo_attack(real):
            out.append(f"| {r['label']} | {r['word']} | {r['p_true_clean']:.2f} | {r['p_true_attacked']:.2f} | "
                       f"{r['p_word_attacked']:.2f} | {r['top_attacked']} |")
    return out


PEAK_MEMORY_SCRIPT = """
import resource, sys, torch
from unclip_lib import load_unclip
torch.manual_seed(0)
pipe = load_unclip("shapes")
pipe.generate(["a small red triangle on the left"] * 16, seed=0)
try:   # Linux: the high-water mark of this process image (ru_maxrss would keep the forking parent's)
    kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print(kib / 1024)
except OSError:
    scale = 1 if sys.platform == "darwin" else 1024      # ru_maxrss: bytes on macOS, KiB elsewhere
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20)
"""


def peak_memory_mb() -> float | None:
    """Peak resident memory (MB) of a fresh process that loads the full stack and generates
    16 images at full resolution; None where the resource module is missing (Windows)."""
    try:
        import resource  # noqa: F401
    except ImportError:
        return None
    out = subprocess.run([sys.executable, "-c", PEAK_MEMORY_SCRIPT], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def speed_section(seed: int, baseline: Path | None = None) -> list[str]:
    """Seconds per stage and end to end, inversion PSNR and model calls, peak memory, the
    training cost of every shipped component."""
    from unclip_lib.evaluate import psnr
    from unclip_lib.pipeline import load_unclip

    t = time.perf_counter()
    pipe = load_unclip("shapes")
    load_seconds = time.perf_counter() - t
    from dataclasses import replace

    from unclip_lib.evaluate import attribute_accuracy

    d = pipe.defaults
    old = replace(d, **OLD_DEFAULTS)
    scenes = ShapesWorld(seed=seed).sample(16, objects=1)
    captions = scenes.captions
    ev = load_evaluator("shapes")
    pipe.generate(captions[:2], seed=seed)                                       # warm-up
    describe = lambda x: (f"{x.sampler}: diffusion prior {x.prior_steps} steps best of {x.prior_candidates}, "  # noqa: E731
                          f"decoder {x.decoder_steps} steps at guidance {x.decoder_guidance}, upsamplers "
                          f"{x.upsampler_steps[0]} + {x.upsampler_steps[1]} steps")
    out = ["", f"Sampling 16 captions to 128 px on this CPU (the fastest of {REPEATS} runs each), the old and the new "
           f"defaults side by side in this run, with the same shipped weights (`pipe.generate(..., return_intermediates=True)` times its "
           f"stages). Old: {describe(old)}. New: {describe(d)}. Prior guidance {d.prior_guidance}. Attribute "
           f"accuracy: all four attributes of the 16 scenes the captions describe, read by the evaluator at 128 px. "
           f"Loading the full stack took {load_seconds:.1f} s.", "",
           "| defaults | prior | prior | decoder 32 px | upsampler 64 px | upsampler 128 px | end to end | "
           "per image | accuracy |",
           "|---|---|---|---|---|---|---|---|---|"]
    ratios = {}
    runs = [("old", pipe, old), ("new", pipe, d)]
    if baseline is not None:          # the weights before too: today's whole stack against the new one
        before = _stack_from(baseline)
        before.generate(captions[:2], seed=seed)                                  # warm-up
        runs.insert(0, (f"old, weights of {baseline.name}", before, old))
    for label, stack, defaults in runs:
        stack.defaults = defaults
        for prior in ("diffusion", "autoregressive"):
            # the fastest of three runs: the least disturbed by whatever else the machine does
            g = min((stack.generate(captions, prior=prior, seed=seed, return_intermediates=True)
                     for _ in range(REPEATS)), key=lambda gen: sum(gen.seconds.values()))
            sec = g.seconds
            total = sum(sec.values())
            ratios.setdefault(prior, {})[label] = total
            acc = attribute_accuracy(ev.predict(g.images, objects=1), scenes.attributes)["all"]
            out.append(f"| {label} | {prior} | " + " | ".join(f"{sec[k]:.2f} s" for k in (
                "prior", "decoder", "upsampler 64", "upsampler 128"))
                + f" | {total:.2f} s | {total / len(captions):.2f} s | {acc:.0%} |")
    pipe.defaults = d
    out.append("\nNew defaults' wall time as a share of the old: " + "; ".join(
        f"{prior} prior {r['new'] / r['old']:.0%}" + "".join(f", {r['new'] / v:.0%} of '{k}'" for k, v in r.items()
                                                        if k not in ("old", "new"))
        for prior, r in ratios.items()) + ".")
    images = ShapesWorld(seed=seed + 1).sample(8, objects=1, resolution=pipe.base_resolution).images
    z = pipe.clip.encode_image(images)
    out += ["", f"DDIM inversion of 8 fresh 32 px images ({d.inversion_steps} steps, guidance "
            f"{d.inversion_guidance}), then decoding the inverted x_T at eta 0:", "",
            "| refinements per step | model calls (inversion + decoding) | seconds per image | PSNR |",
            "|---|---|---|---|"]
    for refine in (0, 1, d.inversion_refine):
        t = time.perf_counter()
        x_T = pipe.invert(images, z_i=z, refine=refine)
        sec = (time.perf_counter() - t) / len(images)
        rec = pipe.decode(z, x_T=x_T, eta=0.0, upsample=False)
        calls = d.inversion_steps * (1 + refine) + d.inversion_steps
        out.append(f"| {refine} | {calls} | {sec:.2f} s | {psnr(rec, images):.1f} dB |")
    mem = peak_memory_mb()
    if mem is not None:
        out.append(f"\nPeak memory (resident set) of a fresh process that loads the full stack and generates "
                   f"16 images at 128 px: {mem:.0f} MB.")
    weights = sum(shipped_path(n).stat().st_size for n in SHIPPED) / 2**20
    out.append(f"\nShipped weights: {len(SHIPPED)} files, {weights:.1f} MB in all (float16).")
    modules = [("clip/shapes", pipe.clip.model), ("evaluator/shapes", load_evaluator("shapes").net),
               ("decoder/shapes", pipe.decoder), ("decoder/shapes_inpaint", pipe.inpainter),
               ("upsampler/up64", pipe.upsamplers[0]),
               ("upsampler/up128", pipe.upsamplers[1]),
               ("prior/diffusion", pipe.priors["diffusion"]), ("prior/autoregressive", pipe.priors["autoregressive"])]
    out += ["", "Training cost of every shipped component (wall clock of the shipped runs on the project's "
            "2-core CPU machine, read from the weights' metadata):"] + training_rows(modules)
    return out


REPEATS = 3   # timings: the fastest of this many runs
OLD_DEFAULTS = dict(sampler="ddim", decoder_steps=25, prior_steps=64, upsampler_steps=(4, 2))


def _stack_from(data: Path | None):
    """The shipped stack, or the one whose weights lie in `data` (e.g. an older data/)."""
    from unclip_lib.pipeline import load_unclip

    if data is None:
        return load_unclip("shapes")
    before = os.environ.get("UNCLIP_LAB_DATA")
    os.environ["UNCLIP_LAB_DATA"] = str(data)
    try:
        return load_unclip("shapes")
    finally:
        if before is None:
            os.environ.pop("UNCLIP_LAB_DATA")
        else:
            os.environ["UNCLIP_LAB_DATA"] = before


def _texture_rows(label: str, scores: dict) -> list[str]:
    return [f"| {label} | {res} px | " + " | ".join(f"period {p}: {r:.2f}x" for p, r in ratios.items()) + " |"
            for res, ratios in scores.items()]


def sampling_section(seed: int, n: int, baseline: Path | None = None) -> list[str]:
    """Grid texture (before / after), the solver sweep, the distances to true renders."""
    from dataclasses import replace

    from unclip_lib.sample_quality import distance_scores, solver_sweep, texture_scores

    pipe, ev = _stack_from(None), load_evaluator("shapes")
    m = min(n, 256)
    out = [f"Grid texture: decodings of the z_i of {m} fresh scenes against the true renders of the same scenes, "
           "as the share of spectral power on each period's block lattice (the frequencies a pattern repeating in "
           "every p x p block occupies), divided by the renders' share (1.00x: as much as real images have). "
           "Periods: the 2x2 fold of the base (2 px at 32 px, 8 px at 128 px), of the 64 px stage (4 px at 128 "
           "px) and of the 128 px stage (2 px). `sample_quality.texture_scores`.", "",
           "| weights and sampler | resolution | ratios |", "|---|---|---|"]
    stacks = [("shipped, " + pipe.defaults.sampler, pipe)]
    if baseline is not None:
        stacks.insert(0, (f"before ({baseline.name}), ddim 25", _stack_from(baseline)))
    for label, stack in stacks:
        if label.startswith("before"):
            stack.defaults = replace(stack.defaults, **OLD_DEFAULTS)
        out += _texture_rows(label, texture_scores(stack, ShapesWorld(seed=seed), n=m, seed=seed))
    k = min(n, 500)
    settings = [("ddim", 25), ("ddim", 10), ("dpm++", 5), ("dpm++", 8), ("dpm++", 10), ("dpm++", 15),
                ("dpm++", 25)]
    out += ["", f"Solver sweep: text to image at 32 px for the canonical captions of {k} fresh one-object scenes "
            f"(diffusion prior, {pipe.defaults.prior_steps} prior steps, decoder guidance "
            f"{pipe.defaults.decoder_guidance}); accuracy of all four attributes by the evaluator, and the "
            "Fréchet (FD) and kernel (KD, x 1000) distances in the evaluator's features to the true renders "
            "of the same scenes. `sample_quality.solver_sweep`.", "",
            "| sampler | decoder steps | decoder evaluations per image | all four | shape | colour | FD | KD x 1000 |"
            " seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for r in solver_sweep(pipe, ev, ShapesWorld(seed=seed + 1), settings, n=k, seed=seed):
        out.append(f"| {r['sampler']} | {r['decoder_steps']} | {r['decoder_calls']} | {r['all']:.1%} | "
                   f"{r['shape']:.1%} | {r['color']:.1%} | {r['fd']:.1f} | {1000 * r['kd']:.2f} | {r['seconds']:.1f} |")
    prior_settings = [("ddim", pipe.defaults.decoder_steps, 64), ("dpm++", pipe.defaults.decoder_steps, 8),
                      ("dpm++", pipe.defaults.decoder_steps, 16), ("dpm++", pipe.defaults.decoder_steps, 32)]
    out += ["", f"The diffusion prior's steps (decoder at its default {pipe.defaults.decoder_steps} "
            f"{pipe.defaults.sampler} steps; the prior's sampler as named):", "",
            "| prior sampler | prior steps | all four | FD | KD x 1000 | seconds |", "|---|---|---|---|---|---|"]
    for (sampler, _, p_steps), r in zip(prior_settings, solver_sweep(
            pipe, ev, ShapesWorld(seed=seed + 1), prior_settings, n=k, seed=seed)):
        out.append(f"| {sampler} | {p_steps} | {r['all']:.1%} | {r['fd']:.1f} | {1000 * r['kd']:.2f} | "
                   f"{r['seconds']:.1f} |")
    out += ["", f"Distances to the true renders of the same scenes for both priors and the ablations ({k} "
            "captions, shipped defaults, base 32 px; both distances are biased by the sample size, so compare "
            "rows, not runs of other sizes). `sample_quality.distance_scores`.", "",
            "| decoder conditioned on | all four | shape | colour | FD | KD x 1000 |", "|---|---|---|---|---|---|"]
    names = {"diffusion": "diffusion prior z_i", "autoregressive": "autoregressive prior z_i",
             "z_t": "text embedding z_t", "caption": "caption only (GLIDE-like)"}
    for cond, r in distance_scores(pipe, ev, ShapesWorld(seed=seed + 2), n=k, seed=seed).items():
        out.append(f"| {names.get(cond, cond)} | {r['all']:.1%} | {r['shape']:.1%} | {r['color']:.1%} | "
                   f"{r['fd']:.1f} | {1000 * r['kd']:.2f} |")
    return out


def edits_section(seed: int, n: int) -> list[str]:
    """Inpainting: one object of fresh two-object scenes replaced by another, both methods on
    the same scenes and masks (`edits.inpaint_scores`)."""
    from unclip_lib.edits import inpaint_scores
    from unclip_lib.pipeline import load_unclip

    pipe, ev = load_unclip("shapes", priors=("diffusion",)), load_evaluator("shapes")
    d = pipe.defaults
    settings = [("repaint", 1), ("repaint", 2), ("repaint", 4)] + ([("glide", 1)] if pipe.inpainter else [])
    out = [f"Edits: {n} fresh two-object scenes at 32 px; in each, the half of the image holding one object is "
           "masked and a caption asks for an object of another shape and colour in its place (`edits.replacement_task`;"
           f" the caption goes through the diffusion prior). {d.inpaint_steps} decoder steps at guidance "
           f"{d.decoder_guidance}. Asked: the evaluator reads the asked shape and colour at the masked object's "
           "position; kept: the other object keeps its shape, colour and size; both: the two at once. Kept PSNR: the "
           "kept pixels against the input (inf: all bit-for-bit equal). Seam: gradient energy on the mask's border "
           "over the same border in true renders of the asked scenes (1.00: no more edge than a real image). "
           "`edits.inpaint_scores`.", "",
           "| method | resample | decoder evaluations per image | asked | kept | both | kept PSNR | seam | seconds |",
           "|---|---|---|---|---|---|---|---|---|"]
    for method, r in settings:
        t = time.perf_counter()
        sc = inpaint_scores(pipe, ev, ShapesWorld(seed=seed), n=n, seed=seed, method=method, resample=r)
        sec = time.perf_counter() - t
        calls = 2 * d.inpaint_steps * (r if method == "repaint" else 1)
        out.append(f"| {method} | {r if method == 'repaint' else '-'} | {calls} | {sc['asked']:.1%} | "
                   f"{sc['kept']:.1%} | {sc['both']:.1%} | {sc['kept_psnr']:.1f} | {sc['seam']:.2f} | {sec:.0f} |")
    return out


def write_blocks(path: Path, blocks: dict[str, list[str]]) -> None:
    """Replace each named block of `path` between <!-- bench:NAME --> and <!-- /bench:NAME -->
    (appending those `path` lacks), keeping the rest of the file."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    for name, lines in blocks.items():
        body = f"<!-- bench:{name} -->\n" + "\n".join(lines).strip("\n") + f"\n<!-- /bench:{name} -->"
        pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: body, text)
        else:
            text = text.rstrip("\n") + f"\n\n## Latest run: {name}\n\n{body}\n"
        print(f"wrote block {name!r} to {path}", file=sys.stderr)
    path.write_text(text)


def world_section(seed: int, n: int) -> list[str]:
    """Rendering rate, CLIP zero-shot accuracy, evaluator accuracy."""
    out = [f"- Rendering: {render_rate():,.0f} images/s at 64 px on one core (one-object scenes)."]
    clip = load_clip("shapes")
    fresh = ShapesWorld(seed=seed).sample(n, objects=1)
    held = ShapesWorld(seed=seed + 1).sample(n // 2, split="held_out")
    zs, zh = (zero_shot_accuracy(clip, b.images, b.attributes) for b in (fresh, held))
    meta = read_metadata(shipped_path("clip/shapes"))["extra"]
    out += ["", "CLIP zero-shot (ranking all 480 canonical captions):", "",
            "| images | shape | colour | size | position | exact caption |", "|---|---|---|---|---|---|"]
    for name, acc, k in (("fresh, one object", zs, n), ("held-out shape x colour", zh, n // 2)):
        out.append(f"| {name} ({k}) | " + " | ".join(f"{acc[c]:.1%}" for c in KEYS) + f" | {acc['exact']:.1%} |")
    out.append(f"\nCLIP training: {meta['train']['steps']} steps of batch {meta['train']['batch_size']}, "
               f"{train_seconds(meta) / 60:.0f} minutes wall clock (the shipped run, from the weights' metadata).")

    ev = load_evaluator("shapes")
    out += ["", "Attribute evaluator on fresh renders (all combinations, 30% with a word):", "",
            "| resolution | objects | shape | colour | size | position | background | word |",
            "|---|---|---|---|---|---|---|---|"]
    for res in (32, 64, 128):
        for objects in (1, 2):
            b = ShapesWorld(seed=seed + res + objects).sample(
                n // 2, objects=objects, resolution=res, split="all", word_prob=0.3)
            acc = scene_accuracy(ev.predict(b.images), b.attributes)
            out.append(f"| {res} px | {objects} | " + " | ".join(
                f"{acc[k]:.1%}" for k in KEYS + ("background", "word")) + " |")
    emeta = read_metadata(shipped_path("evaluator/shapes"))["extra"]
    out.append(f"\nEvaluator training: {emeta['train']['steps']} steps of batch "
               f"{emeta['train']['batch_size']}, {train_seconds(emeta) / 60:.0f} minutes wall clock.")
    return out


def emoji_attack_rows(world, clip, seed: int, n: int) -> list[str]:
    """The typographic attack (paper Figure 6) on the emoji CLIP: apples in every style with
    words written over them, and fresh emoji of training pairs with the same words."""
    from unclip_lib.emoji_experiments import apples, attack_words, typographic_attack_images, typographic_attack_scores

    words = ["phone"] + attack_words(world, 24, seed=seed, avoid={"apple", "phone"})
    controls = attack_words(world, len(words), seed=seed + 1, avoid=set(words) | {"apple"})
    sources = {"apples": apples(world),
               "fresh emoji": world.sample(max(8, n // len(words)), resolution=64, seed=seed + 5).attributes}
    out = ["", f"Typographic attack on the emoji CLIP (paper Figure 6): a word on a white label across the "
           f"emoji ('phone' and {len(words) - 1} other words naming an emoji, drawn with seed {seed}); zero-shot "
           "over 6 labels per image (its own name, the word's emoji's name, 4 random names); success: the share "
           "of images read right when clean whose top label becomes the word's emoji; control: a same-size word "
           "naming none of the labels.", "",
           "| sources | letters (scale) | ink contrast | images | clean accuracy | attacked accuracy "
           "| p(word's emoji) clean -> attacked | success | success by chance | control success |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name, src in sources.items():
        for scale, contrast in ((0.5, 1.0), (0.75, 1.0), (1.0, 0.25), (1.0, 0.5), (1.0, 1.0)):
            a = typographic_attack_scores(clip, typographic_attack_images(world, src, words, scale, contrast,
                                                                          seed=seed))
            c = typographic_attack_scores(clip, typographic_attack_images(world, src, words, scale, contrast,
                                                                          seed=seed, control_words=controls))
            out.append(f"| {name} | {scale} | {contrast} | {a['images']} | {a['clean_accuracy']:.1%} | "
                       f"{a['attacked_accuracy']:.1%} | {a['p_word_clean']:.3f} -> {a['p_word_attacked']:.3f} | "
                       f"{a['success']:.1%} | {a['success_by_chance']:.1%} | {c['success']:.1%} |")
    return out


def emoji_section(seed: int, n: int) -> list[str]:
    """The emoji world: its CLIP's zero-shot figures and its evaluator's accuracy, on fresh images."""
    from unclip_lib.emoji import EmojiWorld
    from unclip_lib.emoji_eval import clip_report, emoji_accuracy, evaluator_report, one_style
    from unclip_lib.evaluate import frechet_distance
    from unclip_lib.images import resize

    world = EmojiWorld(seed=seed)
    clip = load_clip("emoji")
    rep = clip_report(clip, world, n=n, seed=seed)
    meta = read_metadata(shipped_path("clip/emoji"))["extra"]
    rows = [("concept top-1 (all 1,633 names)", "concept_top1"), ("concept top-5", "concept_top5"),
            ("style (own name, 4 styles)", "style"), ("image -> text recall@1", "image_to_text_r@1"),
            ("image -> text recall@5", "image_to_text_r@5"), ("text -> image recall@1", "text_to_image_r@1"),
            ("text -> image recall@5", "text_to_image_r@5")]
    out = [f"Emoji CLIP zero-shot, {n} fresh images per column (retrieval among the column's {n} canonical "
           "captions):", "", "| figure | training pairs | held-out pairs |", "|---|---|---|"]
    out += [f"| {label} | {rep['train/' + k]:.1%} | {rep['held_out/' + k]:.1%} |" for label, k in rows]
    out += [f"| skin tone (own name, 5 tones or none) | {rep['train/skin_tone']:.1%} | - |",
            f"| written word top-1 (740 words), any pair | {rep['word_top1']:.1%} | - |",
            f"| written word top-5 | {rep['word_top5']:.1%} | - |",
            f"| its caption with the right word against another word (chance 50%) | {rep['word_vs_other']:.1%} | - |",
            "", f"Emoji CLIP training: {meta.get('init_steps', 0) + meta['train']['steps']} steps of batch "
            f"{meta['train']['batch_size']} (recipe {meta.get('recipe', 'pairs')!r}"
            + (f", warm-started from {meta['init_steps']} steps" if meta.get("init_steps") else "")
            + f"), {train_seconds(meta) / 60:.0f} minutes wall clock (the shipped run)."]
    out += emoji_attack_rows(world, clip, seed, n)
    if "emoji" not in shipped_names("evaluator"):
        return out + ["", "The emoji evaluator is not shipped yet (`unclip-lab train evaluator --world emoji`)."]
    ev = load_evaluator("emoji")
    keys = ("concept_top1", "concept_top5", "style", "skin_tone", "word", "all")
    out += ["", f"Emoji evaluator on fresh true renders ({n} per row, a word on 30%):", "",
            "| images | concept top-1 | concept top-5 | style | skin tone | word | all four |",
            "|---|---|---|---|---|---|---|"]
    for name, acc in evaluator_report(ev, n=n, seed=seed + 1).items():
        out.append(f"| {name.replace('/', ', ')} | " + " | ".join(f"{acc[k]:.1%}" for k in keys) + " |")
    try:        # 128 px sheets come from the builder (`unclip-lab data emoji`), not the repository
        big = world.sample(n, resolution=128, split="train", word_prob=0.3, seed=seed + 1)
        acc = emoji_accuracy(ev.predict(big.images), big.attributes)
        out.append("| train, 128px (read at 64 px) | " + " | ".join(f"{acc[k]:.1%}" for k in keys) + " |")
    except (ValueError, FileNotFoundError) as err:
        out.append(f"\n(128 px: not measured here: {err})")
    a, b = (world.sample(n, resolution=32, seed=seed + k) for k in (2, 3))
    fa = ev.features(a.images)
    fd = {name: frechet_distance(fa, ev.features(x)) for name, x in
          (("true", b.images), ("detail", resize(resize(b.images, 12), 32)), ("style", one_style(world, b, 32)))}
    emeta = read_metadata(shipped_path("evaluator/emoji"))["extra"]
    out += ["", f"Fréchet distance in the evaluator's features, {n} + {n} images at 32 px: true against true "
            f"{fd['true']:.0f} (the floor at this sample size); against the same true images with their detail lost "
            f"(down to 12 px and back) {fd['detail']:.0f}; against them all drawn in one style (OpenMoji where it "
            f"draws them) {fd['style']:.0f}.",
            "", f"Evaluator training: {emeta['train']['steps']} steps of batch {emeta['train']['batch_size']}, "
            f"{train_seconds(emeta) / 60:.0f} minutes wall clock."]
    return out


def emoji_stack(seed: int):
    """The shipped emoji unCLIP stack and its ruler: (world, evaluator, pipeline, shipped prior
    names), or None when the emoji decoder is not shipped (callers say so: NO_EMOJI_DECODER)."""
    from unclip_lib.emoji import EmojiWorld
    from unclip_lib.pipeline import load_unclip
    from unclip_lib.worlds import world_weights

    weights = world_weights("emoji")
    have = lambda kind, name: name in shipped_names(kind)  # noqa: E731
    if not have("decoder", weights.decoder):
        return None
    priors = tuple(p for p, name in weights.priors.items() if have("prior", name))
    return EmojiWorld(seed=seed), load_evaluator("emoji"), load_unclip("emoji", priors=priors), priors


NO_EMOJI_DECODER = ["The emoji decoder is not shipped yet (`unclip-lab train decoder --world emoji`)."]


def emoji_decoder_section(seed: int, n: int) -> list[str]:
    """The emoji decoder alone, read by the emoji evaluator on fresh emoji: reconstructions from
    z_i (training and held-out pairs), their distance to true emoji, the inversion's round trip,
    grid texture, and the upsamplers."""
    from unclip_lib import emoji_experiments as ex
    from unclip_lib.evaluate import imprint_periods, psnr, texture_ratio

    stack = emoji_stack(seed)
    if stack is None:
        return NO_EMOJI_DECODER
    world, ev, pipe, _ = stack
    r = pipe.base_resolution
    out = []
    # reconstructions from z_i (fresh noise) and the inversion's round trip
    true = world.sample(n, split="train", seed=seed + 1)
    other = world.sample(n, split="train", seed=seed + 2, resolution=r)
    renders = world.sample(n, split="train", seed=seed + 1, resolution=r).images   # the same emoji, drawn at r px
    z = pipe.clip.encode_image(true.images)
    rec = torch.cat([pipe.decode(z[i:i + 100], seed=seed + i, upsample=False) for i in range(0, n, 100)])
    held = world.sample(n, split="held_out", seed=seed + 3)
    rec_held = torch.cat([pipe.decode(pipe.clip.encode_image(held.images[i:i + 100]), seed=seed + i, upsample=False)
                          for i in range(0, n, 100)])
    acc = {name: ex.kept_attributes(ev.predict(x), b.attributes) for name, x, b in
           (("training pairs", rec, true), ("held-out pairs", rec_held, held))}
    m = min(n, 100)
    lat = pipe.encode(true.images[:m])
    back = pipe.decode(lat.z_i, x_T=lat.x_T, upsample=False)
    periods = imprint_periods(r, (r,))

    def texture(reference):
        return ", ".join(f"period {p}: {v:.2f}x" for p, v in texture_ratio(rec, reference, periods).items())

    out += [f"Emoji decoder: {n} fresh emoji per row decoded from their z_i with fresh noise ({r} px), read by the "
            "evaluator (a skin tone on half of those that have one):", "",
            "| sources | concept top-5 | concept top-1 | style | skin tone |", "|---|---|---|---|---|"]
    out += [f"| {name} | " + " | ".join(f"{k[key].mean():.1%}" for key in ("concept_top5", "concept_top1", "style",
                                                                          "skin_tone")) + " |"
            for name, k in acc.items()]
    out += ["", f"Fréchet distance (evaluator features, {n} + {n} images at {r} px): reconstructions against other "
            f"true emoji {ex.frechet_to_true(ev, rec, other.images):.0f}; true against true "
            f"{ex.frechet_to_true(ev, resize(true.images, r), other.images):.0f}. Inversion round trip (DDIM "
            f"inversion, then eta = 0 decoding) on {m} emoji: PSNR {psnr(back, resize(true.images[:m], r)):.1f} dB. "
            "Grid texture (the share of spectral power on the 2 px block lattice, as a multiple of the share in "
            f"the world's own {r} px renders of the same emoji, what the decoder learns from; 1.00x: as much as "
            "real emoji have): "
            + texture(renders) + f"; against the same emoji at {r} px by antialiased resizing, which removes half "
            "the power there, " + texture(resize(true.images, r)) + "."]
    out += upsampler_rows(pipe, seed, min(n, 64), world="emoji", resolutions=tuple(world.data.available_resolutions()))
    return out


def emoji_manipulations_section(seed: int, k: int) -> list[str]:
    """The paper's manipulations on emoji (no prior needed), k sources or pairs per row: variations
    across eta, interpolations, text diffs per kind, PCA reconstructions, and what the decoder
    draws from the typographically attacked apples."""
    from unclip_lib import emoji_experiments as ex
    from unclip_lib.emoji_pairs import KINDS, minimal_pairs

    stack = emoji_stack(seed)
    if stack is None:
        return NO_EMOJI_DECODER
    world, ev, pipe, _ = stack
    out = []
    var = ex.variation_scores(pipe, ev, world.sample(k, split="train", seed=seed + 4), n=4,
                              etas=(0.0, 0.25, 0.5, 0.75, 1.0), seed=seed)
    out += [f"Variations of {k} fresh emoji, 4 each (evaluator; diversity: mean RMS pixel distance between the "
            "variations of one source):", "", "| eta | concept top-5 kept | top-1 kept | style kept | both | diversity |",
            "|---|---|---|---|---|---|"]
    out += [f"| {eta} | {v['concept_top5']:.1%} | {v['concept_top1']:.1%} | {v['style']:.1%} | "
            f"{v['concept_and_style']:.1%} | {v['diversity']:.3f} |" for eta, v in var.items()]
    a, b = ex.interpolation_pairs(world, k, seed=seed + 5)
    interp = ex.interpolation_scores(pipe, ev, a, b, steps=5, seed=seed)
    out += ["", f"Interpolations between {k} pairs of emoji differing in concept and style (concept: top 5):", "",
            "| x_T | theta | a | b | neither | a's style | b's style |", "|---|---|---|---|---|---|---|"]
    out += [f"| {mode} | {row['theta']} | {row['a']:.1%} | {row['b']:.1%} | {row['neither']:.1%} | "
            f"{row['a_style']:.1%} | {row['b_style']:.1%} |" for mode, rows in interp.items() for row in rows]
    out += ["", f"Text diffs on {k} minimal pairs per kind, thetas 0 to 0.5 (edited: the target read and the rest "
            "kept at some theta):", "", "| kind | edited | mean first theta | PSNR at theta 0 |", "|---|---|---|---|"]
    for kind in KINDS:
        d = ex.text_diff_scores(pipe, ev, world, minimal_pairs(world, kind, n=k, seed=seed + 6), seed=seed)
        out.append(f"| {kind} | {d['edited']:.1%} | {d['first_theta']:.2f} | {d['psnr_theta0']:.1f} dB |")
    pca = ex.fit_pca(pipe.clip, world, n=4000, seed=seed + 7)
    table = ex.pca_scores(pipe, ev, world, pca, world.sample(k, split="all", seed=seed + 8), seed=seed)
    keys = ("group", "colour", "style", "concept_top5", "concept_top1", "skin_tone")
    out += ["", f"PCA reconstructions (paper Figure 7): z_i of {k} emoji rebuilt from its first k components, one "
            "x_T per emoji across k; the share keeping each attribute (colour: mean ink colour within 0.12 RMS):",
            "", "| k | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    out += [f"| {kk} | " + " | ".join(f"{row[key]:.1%}" for key in keys) + " |" for kk, row in table.items()]
    words = ["phone"] + ex.attack_words(world, 24, seed=seed, avoid={"phone"})
    attack = ex.typographic_attack_images(world, ex.apples(world), words, seed=seed)
    dec = ex.attack_decodings(pipe, ev, world, attack, samples=2, seed=seed)
    out += ["", f"What the decoder draws from the apples' z_i ({len(attack.words)} attacked images, 2 samples each):",
            "", "| z_i of | apple (top 5) | apple (top 1) | the word's emoji | the word written |", "|---|---|---|---|---|"]
    out += [f"| {name} | {dec['own_top5' + s]:.1%} | {dec['own_top1' + s]:.1%} | {dec['word_concept' + s]:.1%} | "
            f"{dec['word_written' + s]:.1%} |" for name, s in (("clean apples", "_clean"), ("attacked apples", ""))]
    return out


def emoji_priors_section(seed: int, k: int) -> list[str]:
    """Text to image on emoji, k captions per row: concept and style with each prior against z_t
    and the caption alone (the importance of the prior), style diversity against guidance, and
    the distance to true emoji."""
    from unclip_lib import emoji_experiments as ex

    stack = emoji_stack(seed)
    if stack is None:
        return NO_EMOJI_DECODER
    world, ev, pipe, priors = stack
    r = pipe.base_resolution
    if not priors:
        return ["The emoji priors are not shipped yet (`unclip-lab train prior --world emoji`)."]
    out = []
    caps = {"training concepts": ex.concept_captions(world, k, seed=seed + 9),
            "training pairs, style named": ex.concept_captions(world, k, seed=seed + 10, style_named=True),
            "held-out pairs, style named": ex.concept_captions(world, min(k, len(world.pairs("held_out"))),
                                                               seed=seed + 11, split="held_out", style_named=True)}
    signals = priors + ("z_t", "caption")
    out += [f"Text to image ({k} captions per row, {r} px, the evaluator; the paper's Figure 8 ordering is "
            "diffusion >= autoregressive > z_t > caption only):", "",
            "| captions | conditioning | concept top-1 | concept top-5 | style |", "|---|---|---|---|---|"]
    for name, (c, t) in caps.items():
        for sig in (signals if name == "training concepts" else priors[:1]):
            s = ex.text_to_image_scores(pipe, ev, world, c, t, prior=sig, seed=seed, style_named="style" in name)
            out.append(f"| {name} | {sig} | {s['concept_top1']:.1%} | {s['concept_top5']:.1%} | "
                       + (f"{s['style']:.1%} |" if "style" in s else "- |"))
    c, t = ex.concept_captions(world, max(10, k // 4), seed=seed + 12, all_styles=True)
    out += ["", f"Style diversity: {len(c)} captions naming no style (concepts drawn in all four), 8 samples each; "
            "entropy of the evaluator's style (max 2 bits):", "",
            "| conditioning | decoder guidance | style entropy | concept top-5 | pixel diversity |", "|---|---|---|---|---|"]
    for sig in signals:     # guidance's effect on diversity: unCLIP against the caption-only decoder
        for g in ((1.0, 3.0, 5.0) if sig in (priors[0], "caption") else (None,)):
            e = ex.style_entropy(pipe, ev, c, t, samples=8, prior=sig, seed=seed, decoder_guidance=g)
            out.append(f"| {sig} | {g or pipe.defaults.decoder_guidance} | {e['style_entropy_bits']:.2f} bits | "
                       f"{e['concept_top5']:.1%} | {e['diversity']:.3f} |")
    fake = pipe.generate(world.sample(k, seed=seed + 13).captions, seed=seed, upsample=False)
    true_pair = [world.sample(k, split="train", seed=seed + i, resolution=r).images for i in (1, 2)]
    out += ["", f"Fréchet distance of {k} text-to-image samples (diffusion prior, canonical captions of fresh emoji) "
            f"to {k} true emoji: {ex.frechet_to_true(ev, fake, world.sample(k, seed=seed + 14, resolution=r).images):.0f}"
            f" (true against true at this size: {ex.frechet_to_true(ev, *true_pair):.0f})."]
    return out


def evaluation_section(seed: int, n: int) -> list[str]:
    """Guidance against fidelity and diversity: unCLIP and the GLIDE-like decoder."""
    from unclip_lib.fidelity import CONDITIONING_NAMES, guidance_sweep
    from unclip_lib.pipeline import load_unclip

    pipe = load_unclip("shapes")
    ev = load_evaluator("shapes")
    k, s = max(4, n // 4), 4
    guidances = (1.0, 2.0, 3.0, 5.0, 8.0)
    sweep = guidance_sweep(pipe, ev, guidances=guidances, n_captions=k, samples=s, seed=seed)
    out = ["", f"Decoder guidance against fidelity and diversity (paper Figures 9-10): {k} fresh captions "
           f"stating only shape and colour, {s} samples each at the base 32 px with the same seeds at every "
           "guidance (so unCLIP's prior draws the same z_i); fidelity: shape and colour right (evaluator); "
           "diversity across the samples of a caption: RMS pixel distance and the entropy (bits) of the "
           "unstated size (max 1), position (max 2.32) and background (max 2), and their sum:", "",
           "| decoder conditioned on | guidance | shape+colour | pixel diversity | size entropy | "
           "position entropy | background entropy | sum |", "|---|---|---|---|---|---|---|---|"]
    for cond, rows in sweep.items():
        for g, r in rows.items():
            out.append(f"| {CONDITIONING_NAMES[cond]} | {g} | {r['shape+color']:.1%} | {r['diversity']:.3f} | "
                       f"{r['size_entropy']:.2f} | {r['position_entropy']:.2f} | {r['background_entropy']:.2f} | "
                       f"{r['open_entropy']:.2f} |")
    return out


def limitations_section(seed: int, n: int) -> list[str]:
    """The paper's limitations: attribute binding, spelling, detail at the base resolution."""
    from unclip_lib.fidelity import CONDITIONING_NAMES
    from unclip_lib.limitations import BINDING_OUTCOMES, base_resolution_detail, binding_scores, spelling_scores
    from unclip_lib.pipeline import load_unclip

    pipe = load_unclip("shapes")
    ev = load_evaluator("shapes")
    m = max(4, n // 2)
    conds = ("diffusion", "autoregressive", "caption", "image")
    b = binding_scores(pipe, ev, n=m, conditionings=conds, seed=seed + 1)
    out = [f"Attribute binding: {m} fresh two-object captions (\"two shapes: a red circle and a blue square\", "
            "two different shapes and colours), one 128 px sample each, read by the evaluator (which also counts "
            "the objects): correct; misbound, using only the caption's shapes and colours but binding them wrongly "
            "(colours swapped between the objects, one colour leaked to both, or one shape drawn twice); wrong "
            "count (not two objects); wrong (an unstated shape or colour):", "",
            "| decoder conditioned on | correct | swapped | colour leaked | shape doubled | wrong count | wrong "
            "| both shapes right | both colours right |", "|---|---|---|---|---|---|---|---|---|"]
    for cond in conds:
        r = b[cond]
        out.append(f"| {CONDITIONING_NAMES[cond]} | " + " | ".join(f"{r[o]:.1%}" for o in (*BINDING_OUTCOMES, "shapes",
                                                                                          "colors")) + " |")
    nb = binding_scores(pipe, ev, n=m, conditionings=("diffusion", "image"), seed=seed + 1, decoder_caption=False)
    for cond in ("diffusion", "image"):
        r = nb[cond]
        out.append(f"| {CONDITIONING_NAMES[cond]}, decoder without the caption | "
                   + " | ".join(f"{r[o]:.1%}" for o in (*BINDING_OUTCOMES, "shapes", "colors")) + " |")
    out.append("\nThe rows without \"without the caption\" are the default, the paper's decoder: it reads the "
               "caption's tokens beside z_i (for \"image\", the true render's caption). The others decode z_i alone.")
    c = b["clip"]
    out.append(f"\nCLIP itself on the true renders of these scenes: its own caption scores above the caption with "
               f"the colours swapped for {c['accuracy']:.1%} of images (chance 50%), by a mean cosine margin of "
               f"{c['margin']:.3f}; above a caption with one colour replaced by an absent one for "
               f"{c['substitution_accuracy']:.1%}, by {c['substitution_margin']:.3f}.")
    sp = spelling_scores(pipe, ev, n=m, seed=seed + 2)
    out += ["", f"Spelling: {m} one-object captions asking for a written word (\"a red circle with the word 'red' "
            "written on it\"); 128 px samples (diffusion prior) read by the evaluator, whose word accuracy on true "
            f"renders is {sp['renders']['word']:.1%}:", "",
            "| the word names | exactly the asked word | some word | shape+colour right |", "|---|---|---|---|"]
    for kind, name in (("own", "the object's own shape or colour (as in training)"),
                       ("other", "another shape or colour")):
        r = sp[kind]
        out.append(f"| {name} | {r['word']:.1%} | {r['any_word']:.1%} | {r['object']:.1%} |")
    det = base_resolution_detail(pipe, ev, n=n, seed=seed + 3)
    out += ["", f"Detail at the base resolution: {n} fresh one-object scenes with a written word, rendered at 128 px, "
            "and rendered at the base 32 px then brought to 128 px by the diffusion upsamplers or by bicubic "
            "resizing; evaluator accuracy and PSNR against the 128 px render:", "",
            "| 128 px image | shape | shape (small objects) | colour | word | PSNR |", "|---|---|---|---|---|---|"]
    for name, label in (("full", "rendered at 128 px"), ("upsampled", "32 px render, diffusion upsamplers"),
                        ("bicubic", "32 px render, bicubic")):
        r = det[name]
        out.append(f"| {label} | {r['shape']:.1%} | {r['small_shape']:.1%} | {r['color']:.1%} | {r['word']:.1%} | "
                   + ("-" if name == "full" else f"{r['psnr']:.2f} dB") + " |")
    return out


SECTIONS = ("world", "decoder", "priors", "manipulations", "probes", "evaluation", "limitations", "sampling",
            "edits", "speed", "emoji", "emoji_decoder", "emoji_manipulations", "emoji_priors")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    p.add_argument("-n", type=int, default=1000, help="images per figure (sections cap it, e.g. 500 or 200)")
    p.add_argument("--decoder", action="store_true", help="also measure the decoder stack")
    p.add_argument("--priors", action="store_true", help="also measure text to image with both priors")
    p.add_argument("--upsamplers", action="store_true", help="only the upsampler table (part of --decoder)")
    p.add_argument("--manipulations", action="store_true",
                   help="also measure variations, text diffs and interpolations")
    p.add_argument("--probes", action="store_true", help="also measure the PCA probe and typographic attacks")
    p.add_argument("--evaluation", action="store_true",
                   help="also measure guidance against fidelity and diversity (unCLIP and GLIDE-like)")
    p.add_argument("--limitations", action="store_true",
                   help="also measure attribute binding, spelling and detail at the base resolution")
    p.add_argument("--speed", action="store_true", help="also measure seconds per stage, inversion, peak memory")
    p.add_argument("--edits", action="store_true",
                   help="also measure inpainting: RePaint at several resample counts and the inpainting decoder")
    p.add_argument("--sampling", action="store_true",
                   help="also measure grid texture, the solver sweep and the distances to true renders")
    p.add_argument("--baseline-data", type=Path, default=None,
                   help="with --sampling or --speed: also measure the weights in this folder (an older data/)")
    p.add_argument("--emoji", action="store_true", help="also measure the emoji world's CLIP and evaluator")
    p.add_argument("--emoji-decoder", action="store_true",
                   help="also measure the emoji decoder: reconstructions, inversion, upsamplers (about 7 min)")
    p.add_argument("--emoji-manipulations", action="store_true",
                   help="also measure variations, interpolations, text diffs, PCA on emoji (about 2 h at -n 100)")
    p.add_argument("--emoji-priors", action="store_true",
                   help="also measure text to image on emoji with both priors, style diversity (about 15 min at -n 100)")
    p.add_argument("--emoji-stack", action="store_true", help="the three emoji sections above")
    p.add_argument("--all", action="store_true", help="every section (about 5 hours on 2 cores: 3 for shapes, 2 for the emoji stack)")
    p.add_argument("--no-world", action="store_true", help="skip the world / CLIP / evaluator section")
    p.add_argument("--write", type=Path, default=None,
                   help="replace the measured sections' blocks in this Markdown file (e.g. BENCHMARKS.md)")
    args = p.parse_args()
    chosen = {name: args.all or getattr(args, name, False) for name in SECTIONS}
    chosen["world"] = not args.no_world
    for name in ("emoji_decoder", "emoji_manipulations", "emoji_priors"):
        chosen[name] = chosen[name] or args.emoji_stack
    started = time.time()
    blocks: dict[str, list[str]] = {}
    runners = {"world": lambda: world_section(args.seed, args.n),
               "decoder": lambda: decoder_section(args.seed, min(args.n, 500)),
               "priors": lambda: prior_section(args.seed, min(args.n, 500)),
               "manipulations": lambda: manipulation_section(args.seed, min(args.n, 200)),
               "probes": lambda: probe_section(args.seed, min(args.n, 200)),
               "evaluation": lambda: evaluation_section(args.seed, min(args.n, 200)),
               "limitations": lambda: limitations_section(args.seed, min(args.n, 200)),
               "speed": lambda: speed_section(args.seed, args.baseline_data),
               "edits": lambda: edits_section(args.seed, min(args.n, 256)),
               "sampling": lambda: sampling_section(args.seed, min(args.n, 500), args.baseline_data),
               "emoji": lambda: emoji_section(args.seed, min(args.n, 1000)),
               "emoji_decoder": lambda: emoji_decoder_section(args.seed, min(args.n, 300)),
               "emoji_manipulations": lambda: emoji_manipulations_section(args.seed, min(args.n, 100)),
               "emoji_priors": lambda: emoji_priors_section(args.seed, min(args.n, 100))}
    for name in SECTIONS:
        if not chosen[name]:
            continue
        t = time.time()
        lines = runners[name]()
        flag = "" if name == "world" else "--" + name.replace("_", "-")   # the option that measures it
        stamp = (f"_Measured {datetime.date.today()} on {machine()} by `python scripts/bench.py --seed {args.seed} "
                 f"-n {args.n} {flag}` in {(time.time() - t) / 60:.1f} min._")
        blocks[name] = [stamp, ""] + lines
    if args.upsamplers and not chosen["decoder"]:
        from unclip_lib.pipeline import load_unclip

        blocks["upsamplers"] = upsampler_rows(load_unclip("shapes", priors=()), args.seed, 32)
    print(f"Measured on {machine()}; `python scripts/bench.py --seed {args.seed}`; "
          f"{(time.time() - started) / 60:.1f} min in all.\n")
    for name, lines in blocks.items():
        print(f"### {name}\n")
        print("\n".join(lines) + "\n")
    if args.write:
        write_blocks(args.write, blocks)


if __name__ == "__main__":
    main()

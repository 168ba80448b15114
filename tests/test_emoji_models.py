"""The emoji world's shipped models, measured on fresh images (seeds none of their runs used).

Thresholds sit below the figures measured at 300 images (BENCHMARKS.md, "The emoji world")
by the sampling error of the smaller samples drawn here, so they hold for any seed; each is a
number that a worse model would miss."""
from __future__ import annotations

import pytest

from unclip_lib import load_clip
from unclip_lib.emoji import EmojiWorld
from unclip_lib.emoji_eval import clip_report


@pytest.fixture(scope="module")
def emoji_clip_report():
    return clip_report(load_clip("emoji"), EmojiWorld(), n=200, seed=424_242)


def test_emoji_clip_names_concepts_styles_and_skin_tones(emoji_clip_report):
    r = emoji_clip_report
    # training pairs: the concept among all 1,633 names, the style among four, the tone among six
    assert r["train/concept_top5"] >= 0.95 and r["train/concept_top1"] >= 0.70, r
    assert r["train/style"] >= 0.92 and r["train/skin_tone"] >= 0.75, r
    assert r["train/image_to_text_r@1"] >= 0.90, r
    # held-out pairs: a concept in a style it never saw it in; chance for top-5 is 0.3%
    assert r["held_out/concept_top5"] >= 0.35 and r["held_out/style"] >= 0.65, r


def test_emoji_clip_reads_more_than_chance(emoji_clip_report):
    r = emoji_clip_report
    # the written word: among 740 words (chance 0.7% for top-5); its own caption with the word
    # against the same caption with another word (chance 50%)
    assert r["word_top5"] >= 0.15, r
    assert r["word_vs_other"] >= 0.85, r


@pytest.fixture(scope="module")
def emoji_evaluator():
    from unclip_lib import load_evaluator

    return load_evaluator("emoji")


def test_emoji_evaluator_reads_true_renders(emoji_evaluator):
    from unclip_lib.emoji_eval import evaluator_report

    r = evaluator_report(emoji_evaluator, n=200, seed=525_252)
    for name in ("train/64px", "train/32px", "held_out/64px"):
        acc = r[name]
        # concept among 1,633 (chance 0.06%), style among 4, skin tone among 6, the word among 741
        assert acc["concept_top1"] >= 0.88 and acc["concept_top5"] >= 0.97, (name, acc)
        assert acc["style"] >= 0.94 and acc["skin_tone"] >= 0.95 and acc["word"] >= 0.95, (name, acc)


def test_emoji_evaluator_distance_sees_lost_detail_and_lost_style(emoji_evaluator):
    from unclip_lib.emoji_eval import one_style
    from unclip_lib.evaluate import frechet_distance
    from unclip_lib.images import resize

    world = EmojiWorld()
    a, b = (world.sample(300, resolution=32, seed=626_262 + k) for k in (0, 1))
    fa = emoji_evaluator.features(a.images)
    floor = frechet_distance(fa, emoji_evaluator.features(b.images))
    detail = frechet_distance(fa, emoji_evaluator.features(resize(resize(b.images, 12), 32)))
    style = frechet_distance(fa, emoji_evaluator.features(one_style(world, b, 32)))
    # two true sets sit closer than true and degraded (BENCHMARKS.md: 662, 899, 1070 at 300 + 300)
    assert detail > 1.15 * floor and style > 1.35 * floor, (floor, detail, style)

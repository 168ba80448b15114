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

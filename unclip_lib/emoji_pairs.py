"""Minimal pairs of the emoji world: an image and the description it should be edited to,
differing in one thing, for text diffs (the paper's Figure 5) measured by the evaluator.

Five kinds of difference, all present in the data:

- "colour":   two concepts whose names differ by one colour word ("red apple" -> "green apple",
              hearts, circles, squares, books);
- "person":   man <-> woman, boy <-> girl ("man cook" -> "woman cook");
- "opposite": up <-> down, left <-> right, full <-> new moon, grinning <-> crying, ...;
- "skin_tone": one emoji from one skin tone to another ("thumbs up: light skin tone" -> "...: dark
              skin tone");
- "style":    the same emoji, the style named in words ("red apple in the noto style" -> "... in
              the openmoji style").

    pairs = minimal_pairs(world, "colour", n=50, seed=0)
    pairs[0].source, pairs[0].target          # attribute dicts (world.render draws them)
    pairs[0].from_caption, pairs[0].to_caption

Concept swaps are drawn uniformly over families (the name without the swapped word: all the
hearts are one family), so that the ten hearts do not outweigh the one apple.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

from .checks import check_int, check_seed, close_matches

COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "brown", "black", "white", "pink", "grey")
WORD_SWAPS = {
    "person": (("man", "woman"), ("boy", "girl"), ("men", "women")),
    "opposite": (("up", "down"), ("left", "right"), ("full", "new"), ("grinning", "crying"), ("first", "last"),
                 ("waxing", "waning"), ("smiling", "frowning")),
}
KINDS = ("colour", "person", "opposite", "skin_tone", "style")


@dataclass(frozen=True)
class MinimalPair:
    """One text diff to make: the image `source` (attributes) described by `from_caption`,
    to be edited to `target` described by `to_caption`; `changed` the attribute that differs
    ("concept", "skin_tone" or "style")."""

    kind: str
    source: dict
    target: dict
    from_caption: str
    to_caption: str
    changed: str


def _swapped(a: str, b: str, kind: str) -> bool:
    if kind == "colour":
        return a != b and a in COLOURS and b in COLOURS
    return (a, b) in WORD_SWAPS[kind] or (b, a) in WORD_SWAPS[kind]


def concept_swaps(world, kind: str) -> dict[str, list[tuple[str, str]]]:
    """Ordered (from, to) concept hexcodes whose names differ in exactly one word, that word
    swapped as `kind` says ("colour", "person" or "opposite"), grouped by family (the name
    with the word blanked, e.g. "_ heart")."""
    if kind not in ("colour", "person", "opposite"):
        raise ValueError(f"concept swaps are 'colour', 'person' or 'opposite', got {kind!r}")
    slots: dict[tuple, list[tuple[str, str]]] = {}
    for hexcode, c in world.concepts.items():
        words = c["name"].split(" ")
        for i, word in enumerate(words):
            slots.setdefault((tuple(words[:i]), tuple(words[i + 1:])), []).append((word, hexcode))
    families: dict[str, list[tuple[str, str]]] = {}
    for (head, tail), members in slots.items():
        for (wa, ha), (wb, hb) in permutations(members, 2):
            if _swapped(wa, wb, kind):
                families.setdefault(" ".join([*head, "_", *tail]), []).append((ha, hb))
    return families


def _check_kind(kind) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind of minimal pair {kind!r}{close_matches(str(kind), KINDS)}; kinds: {list(KINDS)}")
    return kind


def minimal_pairs(world, kind: str, n: int = 50, seed: int = 0, split: str = "train") -> list[MinimalPair]:
    """n random minimal pairs of one kind whose images are both in `split` ("train": neither
    image of a held-out (concept, style) pair); both images in one style. Same seed, same pairs."""
    _check_kind(kind)
    check_int(n, "n", 1, 10_000, hint="pairs to draw")
    check_seed(seed, "seed")
    allowed = set(world.pairs(split))
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    out = []
    if kind in ("colour", "person", "opposite"):
        families = {}
        for family, swaps in concept_swaps(world, kind).items():
            usable = [(a, b, s) for a, b in swaps for s in world.styles
                      if (a, s) in allowed and (b, s) in allowed]
            if usable:
                families[family] = usable
        names = sorted(families)
        for _ in range(n):
            a, b, style = (choices := families[names[rng.integers(len(names))]])[rng.integers(len(choices))]
            source, target = world.attributes(a, style), world.attributes(b, style)
            out.append(MinimalPair(kind, source, target, world.caption({"concept": a}), world.caption({"concept": b}),
                                   "concept"))
    elif kind == "skin_tone":
        toned = [(c, s, tones) for (c, s) in sorted(allowed) if len(tones := world.tones_of(c, s)) >= 2]
        for _ in range(n):
            concept, style, tones = toned[rng.integers(len(toned))]
            ta, tb = (tones[j] for j in rng.choice(len(tones), 2, replace=False))
            source, target = world.attributes(concept, style, ta), world.attributes(concept, style, tb)
            out.append(MinimalPair(kind, source, target, world.caption({"concept": concept, "skin_tone": ta}),
                                   world.caption({"concept": concept, "skin_tone": tb}), "skin_tone"))
    else:
        concepts: dict[str, list[str]] = {}
        for concept, style in sorted(allowed):
            concepts.setdefault(concept, []).append(style)
        multi = [c for c, styles in concepts.items() if len(styles) >= 2]
        for _ in range(n):
            concept = multi[rng.integers(len(multi))]
            sa, sb = (concepts[concept][j] for j in rng.choice(len(concepts[concept]), 2, replace=False))
            source, target = world.attributes(concept, sa), world.attributes(concept, sb)
            out.append(MinimalPair(kind, source, target, world.caption({"concept": concept, "style": sa}),
                                   world.caption({"concept": concept, "style": sb}), "style"))
    return out

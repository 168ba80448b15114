"""The emoji world's builder: pinned npm packages -> the files of data/emoji/ (`unclip-lab data emoji`).

    unclip-lab data emoji                          # rebuild the shipped files in data/emoji/
    unclip-lab data emoji --resolutions 64,128     # ... and the 128 px sheets (not shipped)
    unclip-lab data emoji --verify                 # rebuild into a temporary folder, compare bit for bit

Steps, each resumable:

1. fetch: `npm pack NAME@VERSION` of every package in PACKAGES into WORK/packs/ (a tarball
   already there is reused, so a machine without network builds from copied tarballs), each
   checked against its pinned sha512 integrity (the hash npm itself records);
2. select: the Emojibase emoji (names, groups, tags, skin tones) drawn in at least three of
   the four styles, base forms and single-tone skin variants alike; the held-out
   (concept, style) pairs; the written-word vocabulary;
3. render: every (emoji, style) SVG with `rsvg-convert` (Debian's librsvg2-bin) at 512 px,
   composited on white, cropped to its content (alpha >= 8) centred in a square with the
   same margin for every style (the content fills 7/8 of the side), resized to 128 px
   (Lanczos); cached in WORK/renders/ one PNG per image, written atomically, so an
   interrupted build resumes where it stopped;
4. write: per style, 64 px = the exact 2x2 mean of 128 px, in one lossless WebP sheet (64
   tiles a row), plus index.json, the licences and MANIFEST.json (sha256 of every file;
   the package pins; the versions of rsvg-convert, Pillow and libwebp that made the bytes);
   staged in a temporary folder and moved in, the manifest last.

Only build time needs npm and rsvg-convert; the library reads the written files alone.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .emoji import (BUILT_RESOLUTION, INDEX_FILE, SHEET_COLUMNS, SHIPPED_RESOLUTION, SKIN_TONES, STYLES,
                    downsample2, emoji_dir, file_sha256, manifest_name, sheet_name, tiles_to_sheet)

BUILDER_FORMAT = 1


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str  # npm's dist.integrity: sha512 of the tarball, base64
    role: str

    @property
    def tarball(self) -> str:
        """The file name `npm pack` writes: '@scope/name' -> 'scope-name-VERSION.tgz'."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


PACKAGES = (
    Package("emojibase-data", "17.0.0",
            "sha512-Yvgb5AWoHViHV/gq1qr5ZAarcBip+B27/ZLRsUJkbgAEaLlZ/fof9g882LTpmEpyhBNEC0m2SEmItljHsTygjA==",
            "names, groups, tags and skin tones (MIT)"),
    Package("@iconify-json/noto", "1.2.9",
            "sha512-DQiuXENbun41ch+XPSV55H9FaWKpHTyz46YIKtSaKYD4fIDDzL1tR6H4np/T38jfrTAeI3rcKF0mqHYeZVAuaw==",
            "noto: Google's Noto Color Emoji SVGs (Apache-2.0)"),
    Package("@twemoji/svg", "15.0.0",
            "sha512-ZSPef2B6nBaYnfgdTbAy4jgW95o7pi2xPGwGCU+WMTxo7J6B1lMPTWwSq/wTuiMq+N0khQ90CcvYp1wFoQpo/w==",
            "twemoji: Twemoji SVGs (graphics CC-BY-4.0)"),
    Package("openmoji", "17.0.0",
            "sha512-EBnYrNGdcdw+OSXmENeNE1yBNRu6tOraTmoOyUbJkTmvT/+XETp8RZLSJFzD3lrPc5N9CzsyPnRTk0Vp4UaI9w==",
            "openmoji: OpenMoji colour SVGs (CC-BY-SA-4.0)"),
    Package("fluentui-emoji", "1.3.0",
            "sha512-JTXXwqIie2rWTgOkIJDJxr0WtwTz2WU4kdOq8buLVThYwQ264aFR2jdTyuon2oEbLqqGMT64zI4btyn1saB2xw==",
            "fluent: Microsoft Fluent Emoji, flat SVGs (MIT)"),
    Package("spdx-license-list", "6.12.0",
            "sha512-+nUYqm3aZMSHbjsthK+i/HHI2okTElCvqwUd4k8QcSk+FTGgjq+fsdFj2wZOaX6XmR2JdWhf/NeflNnvKOjcnQ==",
            "the Apache-2.0 and CC-BY-4.0 licence texts (CC0)"),
)
PACKAGE = {p.name: p for p in PACKAGES}

RENDER = {"supersample_px": 512, "size": BUILT_RESOLUTION, "content_fraction": 0.875, "alpha_threshold": 8,
          "resize": "lanczos", "background": "white"}
# Lossless WebP: the slowest, smallest method for the shipped 64 px sheets; a faster one for the
# 128 px sheets that stay on the developer's machine (7x faster, ~10% larger).
WEBP = {SHIPPED_RESOLUTION: {"lossless": True, "quality": 100, "method": 6},
        BUILT_RESOLUTION: {"lossless": True, "quality": 100, "method": 4}}
TONE_OF = {1: "light", 2: "medium-light", 3: "medium", 4: "medium-dark", 5: "dark"}
EXCLUDED_GROUPS = {2}          # Emojibase's "component" group: bare skin-tone swatches, hair parts
MIN_STYLES = 3
HELD_OUT_SHARE = 0.4           # of the concepts drawn in all four styles, each holding out one style
HELD_OUT_FORCED = {"1F431": "fluent"}   # the example: a Fluent cat face never seen in training
WORD_STOP = {"and", "with", "the", "for", "button", "sign", "mark", "symbol", "tone", "type", "skin", "light",
             "dark", "medium", "selector", "face"}

# Emojibase label -> the file name (without .svg) in fluentui-emoji/icons/flat where the slug differs.
FLUENT_NAMES = {
    "smiling face with open hands": "hugging-face", "face with crossed-out eyes": "knocked-out-face",
    "enraged face": "pouting-face", "person: blond hair": "person-blonde-hair-default",
    "woman: blond hair": "woman-blonde-hair-default", "man: blond hair": "man-blonde-hair-default",
    "deaf person": "person-deaf-default", "deaf man": "man-deaf-default", "deaf woman": "woman-deaf-default",
    "superhero": "person-superhero-default", "supervillain": "person-supervillain-default",
    "mage": "person-mage-default", "fairy": "person-fairy-default", "vampire": "person-vampire-default",
    "merperson": "person-merpeople-default", "merman": "man-merpeople-default",
    "mermaid": "woman-merpeople-default", "elf": "person-elf-default", "genie": "person-genie",
    "zombie": "person-zombie", "people with bunny ears": "person-with-bunny-ears",
    "men with bunny ears": "man-with-bunny-ears", "women with bunny ears": "woman-with-bunny-ears",
    "people wrestling": "person-wrestling", "men wrestling": "man-wrestling",
    "women wrestling": "woman-wrestling", "black bird": "blackbird", "piñata": "pinata",
    "red triangle pointed up": "red-triangle", "stuffed flatbread": "stuffedbread-flat",
    "keycap: #": "keycap-hashtag", "keycap: *": "keycap-asterisk", "phoenix": "phoenix-bird",
}


class BuildError(RuntimeError):
    """The builder cannot go on; the message says what to do."""


def default_work_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unclip-lab" / "emoji-build"


def _norm(hexcode: str) -> str:
    """Upper-case hexcode without variation selectors: the key every source is matched on."""
    return "-".join(p for p in hexcode.upper().split("-") if p and p != "FE0F")


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower().replace("’", "").replace("'", "")).strip("-")


def _everyday(label: str) -> str:
    """Emojibase label -> caption name: lower case, plain quotes."""
    return label.lower().replace("“", '"').replace("”", '"').replace("’", "'").replace("‘", "'")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _index_bytes(index: dict) -> bytes:
    """index.json, compact but line-based (one concept, one style's image list a line), so a
    rebuild's diff stays readable."""
    def dump(v) -> str:
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    lines = ["{"]
    keys = list(index)
    for i, key in enumerate(keys):
        v, comma = index[key], "," if i < len(keys) - 1 else ""
        if key == "concepts":
            lines.append(f'"{key}":[')
            lines += [dump(c) + ("," if j < len(v) - 1 else "") for j, c in enumerate(v)]
            lines.append("]" + comma)
        elif key == "images":
            lines.append(f'"{key}":{{')
            lines += [f"{dump(s)}:{dump(v[s])}" + ("," if j < len(v) - 1 else "") for j, s in enumerate(v)]
            lines.append("}" + comma)
        else:
            lines.append(f'"{key}":{dump(v)}{comma}')
    lines.append("}")
    return ("\n".join(lines) + "\n").encode("utf-8")


# ----------------------------------------------------------------------------- 1. fetch

def integrity_of(path: Path) -> str:
    h = hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha512-" + base64.b64encode(h.digest()).decode()


def fetch_packages(work_dir: Path, offline: bool = False, log=print) -> dict[str, Path]:
    """Every pinned tarball in WORK/packs/, fetched with `npm pack` when missing, verified by hash."""
    packs = Path(work_dir) / "packs"
    packs.mkdir(parents=True, exist_ok=True)
    out = {}
    for pkg in PACKAGES:
        path = packs / pkg.tarball
        if path.exists() and integrity_of(path) != pkg.integrity:
            log(f"{path} does not match its pinned hash; fetching it again")
            path.unlink()
        if not path.exists():
            if offline:
                raise BuildError(f"{pkg.spec} is not in {packs} and --offline forbids fetching it; run once with "
                                 f"network access (npm reaches the package registry), or copy {pkg.tarball} "
                                 f"(`npm pack {pkg.spec}` on another machine) into {packs}")
            npm = shutil.which("npm")
            if npm is None:
                raise BuildError(f"npm is not installed, and {pkg.tarball} is not in {packs}; install Node.js/npm "
                                 f"(e.g. `apt-get install npm`) or copy the tarballs (`npm pack {pkg.spec}` on "
                                 f"another machine) into {packs}")
            log(f"fetching {pkg.spec} with npm")
            with tempfile.TemporaryDirectory(dir=packs, prefix=".npm-") as tmp:
                proc = subprocess.run([npm, "pack", pkg.spec, "--pack-destination", tmp, "--silent"],
                                      capture_output=True, text=True)
                got = Path(tmp) / pkg.tarball
                if proc.returncode != 0 or not got.exists():
                    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                    raise BuildError(f"`npm pack {pkg.spec}` failed (offline, or the registry unreachable?): "
                                     f"{' / '.join(tail) or 'no output'}. Run again with network access, or copy "
                                     f"{pkg.tarball} into {packs} and use --offline")
                os.replace(got, path)
        digest = integrity_of(path)
        if digest != pkg.integrity:
            path.unlink()
            raise BuildError(f"{pkg.tarball}: sha512 {digest} does not match the pinned {pkg.integrity}; "
                             f"the registry served different bytes for {pkg.spec} (deleted; not built)")
        out[pkg.name] = path
    return out


def _read_members(path: Path, want) -> dict[str, bytes]:
    """{member name: bytes} of the tarball members for which want(name) is true."""
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                if m.isfile() and want(m.name):
                    out[m.name] = tar.extractfile(m).read()
    except (OSError, tarfile.TarError, EOFError) as err:
        raise BuildError(f"{path} is not a readable npm tarball ({err}); delete it and rerun") from err
    return out


class Sources:
    """The SVGs of the four styles and the Emojibase data, read from the tarballs."""

    def __init__(self, tarballs: dict[str, Path]):
        base = _read_members(tarballs["emojibase-data"],
                             lambda n: n in ("package/en/data.json", "package/en/messages.json", "package/LICENSE"))
        self.emojibase = json.loads(base["package/en/data.json"])
        self.messages = json.loads(base["package/en/messages.json"])
        noto = _read_members(tarballs["@iconify-json/noto"],
                             lambda n: n in ("package/icons.json", "package/chars.json"))
        self.noto_icons = json.loads(noto["package/icons.json"])
        self.noto_chars = {_norm(k): v for k, v in json.loads(noto["package/chars.json"]).items()}
        tw = _read_members(tarballs["@twemoji/svg"], lambda n: n.endswith(".svg") or n == "package/license")
        self.twemoji = {_norm(Path(n).stem): b for n, b in tw.items() if n.endswith(".svg")}
        om = _read_members(tarballs["openmoji"],
                           lambda n: n.startswith("package/color/svg/") or n == "package/LICENSE.txt")
        self.openmoji = {_norm(Path(n).stem): b for n, b in om.items() if n.endswith(".svg")}
        fl = _read_members(tarballs["fluentui-emoji"],
                           lambda n: n.startswith("package/icons/flat/") or n == "package/LICENSE")
        self.fluent = {Path(n).stem: b for n, b in fl.items() if n.endswith(".svg")}
        spdx = _read_members(tarballs["spdx-license-list"],
                             lambda n: n in ("package/licenses/Apache-2.0.json", "package/licenses/CC-BY-4.0.json"))
        self.licence_files = {
            "emojibase-data.MIT.txt": base["package/LICENSE"],
            "twemoji-svg.MIT.txt": tw["package/license"],
            "openmoji.CC-BY-SA-4.0.txt": om["package/LICENSE.txt"],
            "fluentui-emoji.MIT.txt": fl["package/LICENSE"],
            "Apache-2.0.txt": (json.loads(spdx["package/licenses/Apache-2.0.json"])["licenseText"].rstrip()
                               + "\n").encode(),
            "CC-BY-4.0.txt": (json.loads(spdx["package/licenses/CC-BY-4.0.json"])["licenseText"].rstrip()
                              + "\n").encode(),
        }

    # -- which file draws an emoji in a style
    def fluent_name(self, label: str, tone: str | None = None, base_label: str | None = None) -> str | None:
        if tone is None:
            name = FLUENT_NAMES.get(label, _slug(label))
            for candidate in (name, f"{name}-default"):
                if candidate in self.fluent:
                    return candidate
            return None
        base = self.fluent_name(base_label)
        if base is None:
            return None
        candidate = f"{base.removesuffix('-default')}-{tone}"
        return candidate if candidate in self.fluent else None

    def has(self, style: str, hexcode: str, label: str, tone: str | None, base_label: str | None) -> bool:
        key = _norm(hexcode)
        if style == "noto":
            return key in self.noto_chars
        if style == "twemoji":
            return key in self.twemoji
        if style == "openmoji":
            return key in self.openmoji
        return self.fluent_name(label, tone, base_label) is not None

    def svg(self, style: str, item: dict) -> bytes:
        key = _norm(item["hexcode"])
        if style == "noto":
            name = self.noto_chars[key]
            icons = self.noto_icons
            while name not in icons["icons"]:
                name = icons["aliases"][name]["parent"]
            icon = icons["icons"][name]
            w, h = icon.get("width", icons.get("width", 16)), icon.get("height", icons.get("height", 16))
            return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                    f'width="{w}" height="{h}" viewBox="0 0 {w} {h}">{icon["body"]}</svg>').encode()
        if style == "twemoji":
            return self.twemoji[key]
        if style == "openmoji":
            return self.openmoji[key]
        return self.fluent[self.fluent_name(item["label"], item["tone"], item["base_label"])]


# ----------------------------------------------------------------------------- 2. select

def _tone(entry: dict) -> str | None:
    t = entry.get("tone")
    if isinstance(t, list):
        t = t[0] if len(set(t)) == 1 else None
    return TONE_OF.get(t) if isinstance(t, int) else None


def _held_out(concepts: list[dict]) -> list[list[str]]:
    """~10% of the (concept, style) pairs: of the concepts drawn in all four styles (base form),
    a fixed share chosen by the sha256 of their hexcode each holds out one style, the styles in
    turn by the same hash, so every held-out concept keeps three styles in training."""
    out = []
    for c in concepts:
        if len(c["styles"]) < len(STYLES):
            continue
        forced = HELD_OUT_FORCED.get(c["concept"])
        h = int(hashlib.sha256(f"unclip-lab held-out {c['concept']}".encode()).hexdigest(), 16)
        if forced:
            out.append([c["concept"], forced])
        elif (h % 1000) < HELD_OUT_SHARE * 1000:
            out.append([c["concept"], STYLES[(h // 1000) % len(STYLES)]])
    return out


def _words(concepts: list[dict]) -> list[str]:
    """The written-word vocabulary: the head nouns of the concepts' names (their last word,
    before any ':'), plain lower-case letters, 3 to 8 of them, a few function words left out.
    Written words are mostly other emoji's names, the material of typographic attacks."""
    words = set()
    for c in concepts:
        w = _head_word(c["name"])
        if w:
            words.add(w)
    return sorted(words)


def _head_word(name: str) -> str | None:
    parts = name.split(":")[0].split()
    if not parts:
        return None
    w = parts[-1]
    return w if re.fullmatch(r"[a-z]{3,8}", w) and w not in WORD_STOP else None


def select(src: Sources) -> tuple[dict, list[tuple[str, dict]]]:
    """(index.json's content, the render jobs [(style, item)] in sheet order)."""
    groups = {g["order"]: g for g in src.messages["groups"]}
    subgroups = {g["order"]: g["key"] for g in src.messages["subgroups"]}
    concepts, jobs = [], {s: [] for s in STYLES}
    for e in sorted(src.emojibase, key=lambda e: (e.get("order", 1 << 30), e["hexcode"])):
        if "group" not in e or e["group"] in EXCLUDED_GROUPS:
            continue
        styles = [s for s in STYLES if src.has(s, e["hexcode"], e["label"], None, None)]
        if len(styles) < MIN_STYLES:
            continue
        concept = {"concept": e["hexcode"], "emoji": e.get("emoji", ""), "name": _everyday(e["label"]),
                   "group": groups[e["group"]]["key"], "subgroup": subgroups.get(e.get("subgroup")),
                   "tags": [_everyday(t) for t in e.get("tags", [])], "styles": styles, "skins": []}
        for s in styles:
            jobs[s].append((e["hexcode"], None, {"hexcode": e["hexcode"], "label": e["label"], "tone": None,
                                                 "base_label": None}))
        seen = set()
        for skin in e.get("skins", []):
            tone = _tone(skin)
            if tone is None or tone in seen:
                continue
            s_styles = [s for s in STYLES if src.has(s, skin["hexcode"], skin["label"], tone, e["label"])]
            if len(s_styles) < MIN_STYLES:
                continue
            seen.add(tone)
            concept["skins"].append({"tone": tone, "hexcode": skin["hexcode"], "name": _everyday(skin["label"]),
                                     "styles": s_styles})
            for s in s_styles:
                jobs[s].append((e["hexcode"], tone, {"hexcode": skin["hexcode"], "label": skin["label"],
                                                     "tone": tone, "base_label": e["label"]}))
        concepts.append(concept)
    names = [c["name"] for c in concepts]
    if len(set(names)) != len(names):
        raise BuildError("two selected emoji share a name; the name lookup would be ambiguous")
    words = _words(concepts)
    for c in concepts:
        c["word"] = _head_word(c["name"])
    index = {
        "format": 1,
        "styles": list(STYLES),
        "skin_tones": list(SKIN_TONES),
        "groups": [[g["key"], g["message"]] for _, g in sorted(groups.items())
                   if g["order"] not in EXCLUDED_GROUPS and any(c["group"] == g["key"] for c in concepts)],
        "concepts": concepts,
        "images": {s: [[h, t] for h, t, _ in jobs[s]] for s in STYLES},
        "held_out": _held_out(concepts),
        "words": words,
    }
    render_jobs = [(s, item) for s in STYLES for _, _, item in jobs[s]]
    return index, render_jobs


# ----------------------------------------------------------------------------- 3. render

def rsvg_version() -> str:
    exe = shutil.which("rsvg-convert")
    if exe is None:
        raise BuildError("rsvg-convert is not installed; it renders the SVGs (build time only): "
                         "`apt-get install librsvg2-bin` on Debian/Ubuntu, `brew install librsvg` on macOS")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    return out.removeprefix("rsvg-convert version ").strip()


def tool_versions() -> dict:
    from PIL import __version__ as pil_version
    from PIL import features

    return {"rsvg-convert": rsvg_version(), "pillow": pil_version, "libwebp": features.version("webp")}


def render_svg(svg: bytes, what: str = "emoji") -> np.ndarray:
    """One SVG -> uint8 [128, 128, 3]: rendered at 512 px, on white, cropped to content, resized."""
    big = RENDER["supersample_px"]
    proc = subprocess.run(["rsvg-convert", "-a", "-w", str(big), "-h", str(big), "-f", "png"],
                          input=svg, capture_output=True)
    if proc.returncode != 0:
        raise BuildError(f"rsvg-convert could not render {what}: {proc.stderr.decode(errors='replace')[:300]}")
    with Image.open(io.BytesIO(proc.stdout)) as im:
        rgba = im.convert("RGBA")
    alpha = np.asarray(rgba)[..., 3]
    ys, xs = np.nonzero(alpha >= RENDER["alpha_threshold"])
    if len(xs) == 0:
        raise BuildError(f"{what} rendered empty")
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    side = int(np.ceil(max(x1 - x0, y1 - y0) / RENDER["content_fraction"]))
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    white.alpha_composite(rgba)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(white.convert("RGB"), ((side - (x1 - x0)) // 2 - x0, (side - (y1 - y0)) // 2 - y0))
    size = RENDER["size"]
    return np.asarray(canvas.resize((size, size), Image.LANCZOS))


def _render_key(versions: dict) -> str:
    """Renders are cached under a key of everything that changes their pixels."""
    blob = json.dumps({"packages": [p.spec + " " + p.integrity for p in PACKAGES], "render": RENDER,
                       "rsvg": versions["rsvg-convert"], "pillow": versions["pillow"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cache_path(render_dir: Path, style: str, item: dict) -> Path:
    return render_dir / style / f"{_norm(item['hexcode'])}.png"


def _load_cached(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB"))
        return a if a.shape == (RENDER["size"], RENDER["size"], 3) else None
    except (OSError, ValueError):
        return None


def render_all(src: Sources, jobs: list[tuple[str, dict]], render_dir: Path, n_jobs: int = 1,
               progress: bool = True) -> dict[tuple[str, str], np.ndarray]:
    """Every job rendered (or read back from the cache): {(style, hexcode): [128, 128, 3]}."""
    from tqdm.auto import tqdm

    def one(job):
        style, item = job
        path = _cache_path(render_dir, style, item)
        a = _load_cached(path) if path.exists() else None
        if a is None:
            a = render_svg(src.svg(style, item), f"{style} {item['hexcode']} ({item['label']})")
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, "PNG", compress_level=1)
            _atomic_write(path, buf.getvalue())
        return (style, item["hexcode"]), a

    for stale in render_dir.glob("*/.*.tmp"):   # half-written by a killed build: never read, removed
        stale.unlink(missing_ok=True)
    out = {}
    bar = tqdm(total=len(jobs), desc="rendering emoji", unit="img", disable=not progress)
    try:
        if n_jobs <= 1:
            for job in jobs:
                k, a = one(job)
                out[k] = a
                bar.update()
        else:
            with ThreadPoolExecutor(n_jobs) as pool:
                for k, a in pool.map(one, jobs):
                    out[k] = a
                    bar.update()
    finally:
        bar.close()
    return out


# ----------------------------------------------------------------------------- 4. write

LICENSE_MD = """# Licences of the emoji world's data

The files in this folder were made by `unclip-lab data emoji` (unclip_lib/emoji_data.py) from
the npm packages pinned in MANIFEST.json: each SVG was rendered with rsvg-convert, composited
on white, cropped to its content with the same margin for every style and resized (128 px,
then exact 2x2 means to 64 px). Those are the only changes. Each style stays in its own
files, under its own licence:

| files | artwork | licence | text |
|---|---|---|---|
| `noto_*.webp` | Google Noto Color Emoji, from `@iconify-json/noto` {noto} | Apache-2.0 | `LICENSES/Apache-2.0.txt` |
| `twemoji_*.webp` | Twemoji, from `@twemoji/svg` {twemoji} | CC-BY-4.0 (graphics) | `LICENSES/CC-BY-4.0.txt` (package: `LICENSES/twemoji-svg.MIT.txt`) |
| `openmoji_*.webp` | OpenMoji, from `openmoji` {openmoji} | CC-BY-SA-4.0 | `LICENSES/openmoji.CC-BY-SA-4.0.txt` |
| `fluent_*.webp` | Microsoft Fluent Emoji (flat), from `fluentui-emoji` {fluent} | MIT | `LICENSES/fluentui-emoji.MIT.txt` |
| `index.json` | names, groups, tags and skin tones from `emojibase-data` {emojibase} | MIT | `LICENSES/emojibase-data.MIT.txt` |

The OpenMoji-derived files (`openmoji_*.webp`) are adaptations of OpenMoji and are licensed
under CC-BY-SA-4.0 as a whole; they are kept as separate files and are not combined with the
other styles' files. Sampling from several styles at run time makes no new file.

## Attribution

- **Google Noto Color Emoji**: Copyright 2013 Google Inc., licensed under the Apache License,
  Version 2.0 (the googlefonts/noto-emoji project; SVGs as repackaged by Iconify in
  `@iconify-json/noto`). Modified: rasterised, cropped, composited on white, resized.
- **Twemoji**: graphics Copyright 2014-2021 Twitter, Inc and other contributors, and
  2022-present Jason Sofonia & Justine De Caires (the jdecked/twemoji project), licensed under
  CC-BY 4.0. Modified: rasterised, cropped, composited on white, resized.
- **OpenMoji**: All emojis designed by OpenMoji - the open-source emoji and icon project.
  License: CC BY-SA 4.0. Modified: rasterised, cropped, composited on white, resized.
- **Microsoft Fluent Emoji**: Copyright (c) Microsoft Corporation, MIT License (the
  microsoft/fluentui-emoji project; flat SVGs as repackaged by Mohammad Abu Mattar in
  `fluentui-emoji`, whose MIT licence is in `LICENSES/fluentui-emoji.MIT.txt`).
- **Emojibase**: Copyright (c) 2017-2019 Miles Johnson, MIT License.
- Licence texts not shipped in the packages themselves (Apache-2.0, CC-BY-4.0) come from
  `spdx-license-list` {spdx} (CC0).

Apple's and Facebook's emoji sets are not openly licensed and are not used.
"""


def licence_files(src: Sources) -> dict[str, bytes]:
    versions = {k: f"{PACKAGE[n].version}" for k, n in
                (("noto", "@iconify-json/noto"), ("twemoji", "@twemoji/svg"), ("openmoji", "openmoji"),
                 ("fluent", "fluentui-emoji"), ("emojibase", "emojibase-data"), ("spdx", "spdx-license-list"))}
    out = {"LICENSE.md": LICENSE_MD.format(**versions).encode()}
    out.update({f"LICENSES/{name}": data for name, data in src.licence_files.items()})
    return out


def _webp_bytes(sheet: np.ndarray, resolution: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(sheet).save(buf, "WEBP", **WEBP[resolution])
    return buf.getvalue()


def _counts(index: dict) -> dict:
    pairs = sum(1 for s in STYLES for _, t in index["images"][s] if t is None)
    return {"concepts": len(index["concepts"]),
            "concepts_in_all_styles": sum(len(c["styles"]) == len(STYLES) for c in index["concepts"]),
            "skin_tone_variants": sum(len(c["skins"]) for c in index["concepts"]),
            "pairs": pairs, "images": sum(len(index["images"][s]) for s in STYLES),
            "held_out_pairs": len(index["held_out"]), "words": len(index["words"])}


def write_outputs(out_dir: Path, files: dict[str, bytes], manifest_file: str, manifest: dict) -> None:
    """Stage every file in a temporary folder beside out_dir, then move them in, the manifest last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = dict(manifest)
    manifest["files"] = {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                         for name, data in sorted(files.items())}
    files = dict(files)
    files[manifest_file] = _json_bytes(manifest)
    for stale in out_dir.glob(".staging-*"):    # left by a build killed while moving files in
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".staging-") as stage:
        for name, data in files.items():
            p = Path(stage) / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        (out_dir / manifest_file).unlink(missing_ok=True)  # a half-moved folder is then seen as incomplete
        for name in [n for n in files if n != manifest_file] + [manifest_file]:
            target = out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(stage) / name, target)


def build(out_dir: str | Path | None = None, work_dir: str | Path | None = None,
          resolutions: tuple[int, ...] = (SHIPPED_RESOLUTION,), n_jobs: int = 1, offline: bool = False,
          progress: bool = True, log=print) -> dict:
    """The whole build; returns the counts. See the module docstring."""
    out_dir = Path(out_dir) if out_dir is not None else emoji_dir()
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir()
    bad = set(resolutions) - {SHIPPED_RESOLUTION, BUILT_RESOLUTION}
    if bad or not resolutions:
        raise BuildError(f"--resolutions takes {SHIPPED_RESOLUTION} and/or {BUILT_RESOLUTION} "
                         f"(32 px is derived from 64 px at load time), got {sorted(resolutions)}")
    versions = tool_versions()                      # fails early without rsvg-convert
    tarballs = fetch_packages(work_dir, offline=offline, log=log)
    src = Sources(tarballs)
    index, jobs = select(src)
    counts = _counts(index)
    log(f"{counts['concepts']} concepts in >= {MIN_STYLES} styles ({counts['concepts_in_all_styles']} in all four), "
        f"{counts['skin_tone_variants']} skin-tone variants, {counts['images']} images, "
        f"{counts['held_out_pairs']} held-out pairs")
    render_dir = work_dir / "renders" / _render_key(versions)
    renders = render_all(src, jobs, render_dir, n_jobs=n_jobs, progress=progress)
    manifest = {
        "builder_format": BUILDER_FORMAT,
        "command": "unclip-lab data emoji",
        "packages": {p.name: {"version": p.version, "integrity": p.integrity, "role": p.role} for p in PACKAGES},
        "tools": versions,
        "render": RENDER,
        "webp": None,                       # per resolution, below
        "sheet_columns": SHEET_COLUMNS,
        "counts": counts,
    }
    from tqdm.auto import tqdm

    for res in sorted(resolutions):
        files: dict[str, bytes] = {}
        if res == SHIPPED_RESOLUTION:
            files[INDEX_FILE] = _index_bytes(index)
            files.update(licence_files(src))
        for style in tqdm(STYLES, desc=f"writing {res} px sheets", disable=not progress):
            tiles = np.stack([renders[(style, item["hexcode"])] for s, item in jobs if s == style])
            while tiles.shape[1] > res:
                tiles = downsample2(tiles)
            files[sheet_name(style, res)] = _webp_bytes(tiles_to_sheet(tiles), res)
        m = dict(manifest, webp=WEBP[res], resolution=res,
                 index_sha256=hashlib.sha256(_index_bytes(index)).hexdigest())
        write_outputs(out_dir, files, manifest_name(res), m)
        log(f"wrote {len(files) + 1} files to {out_dir} ({sum(len(b) for b in files.values()) / 1e6:.1f} MB)")
    return counts


def compare_folders(built: Path, shipped: Path, resolution: int = SHIPPED_RESOLUTION) -> list[str]:
    """The files of `built`'s manifest that differ from (or are missing in) `shipped`."""
    name = manifest_name(resolution)
    m = json.loads((built / name).read_text(encoding="utf-8"))
    differ = [f for f in list(m["files"]) + [name]
              if not (shipped / f).exists() or file_sha256(shipped / f) != file_sha256(built / f)]
    return differ


def main(argv: list[str] | None = None) -> int:
    """`unclip-lab data emoji ...` (or `python -m unclip_lib.emoji_data ...`)."""
    p = argparse.ArgumentParser(prog="unclip-lab data emoji", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help=f"output folder (default: {emoji_dir()})")
    p.add_argument("--work-dir", default=None,
                   help=f"tarballs and cached renders, reused by reruns (default: {default_work_dir()})")
    p.add_argument("--resolutions", default=str(SHIPPED_RESOLUTION),
                   help=f"sheets to write: {SHIPPED_RESOLUTION} (shipped), {BUILT_RESOLUTION} (not shipped), "
                        f"or both '{SHIPPED_RESOLUTION},{BUILT_RESOLUTION}'")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="rsvg-convert processes at once")
    p.add_argument("--offline", action="store_true", help="never call npm: use the tarballs in WORK/packs only")
    p.add_argument("--verify", action="store_true",
                   help="build into a temporary folder and compare with --out bit for bit (writes nothing there)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    try:
        resolutions = tuple(sorted({int(r) for r in args.resolutions.split(",") if r.strip()}))
    except ValueError:
        print(f"unclip-lab data emoji: --resolutions takes numbers such as 64 or 64,128, got {args.resolutions!r}",
              file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("unclip-lab data emoji: --jobs must be at least 1", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else emoji_dir()
    try:
        if args.verify:
            with tempfile.TemporaryDirectory(prefix="emoji-verify-") as tmp:
                build(tmp, args.work_dir, resolutions, args.jobs, args.offline, not args.no_progress)
                differ = [f for r in resolutions for f in compare_folders(Path(tmp), out, r)]
            if differ:
                print(f"{len(differ)} files differ from {out}: {', '.join(differ)}")
                return 1
            print(f"every file in {out} is reproduced bit for bit")
            return 0
        build(out, args.work_dir, resolutions, args.jobs, args.offline, not args.no_progress)
    except BuildError as err:
        print(f"unclip-lab data emoji: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("unclip-lab data emoji: interrupted; rerun the same command to resume (renders are cached)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The course as a static HTML site with its committed (executed) outputs: `make site`.

    python scripts/make_site.py [--notebooks notebooks] [--out site]

One page per notebook (nbconvert's HTML export, figures embedded, nothing executed) and an
index listing them with their opening lines, so a journal club can read the course in a
browser without running anything. Open site/index.html.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
from pathlib import Path


def title_and_summary(nb: dict) -> tuple[str, str]:
    """The first markdown heading of a notebook and the first sentence after it."""
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        lines = [line.strip() for line in text.splitlines()]
        if lines and lines[0].startswith("#"):
            title = lines[0].lstrip("#").strip()
            paragraphs = " ".join(lines[1:]).split("  ")   # blank lines became double spaces
            body = next((p.strip() for p in paragraphs if p.strip() and not p.strip().startswith(("#", "|"))), "")
            body = re.sub(r"[*`$]", "", body).replace("\\mid", "|")
            sentence = re.split(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])", body, maxsplit=1)[0] if body else ""
            return title, sentence
    return "", ""


def build_site(notebooks: Path, out: Path) -> list[Path]:
    """Write one HTML page per notebook and index.html; returns the pages written."""
    from nbconvert import HTMLExporter

    paths = sorted(notebooks.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks in {notebooks}")
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    exporter.embed_images = True
    rows, pages = [], []
    for path in paths:
        nb = json.loads(path.read_text())
        body, _ = exporter.from_filename(str(path))
        page = out / f"{path.stem}.html"
        page.write_text(body)
        pages.append(page)
        title, summary = title_and_summary(nb)
        rows.append(f'<li><a href="{page.name}">{html.escape(title or path.stem)}</a>'
                    f'<p>{html.escape(summary)}</p></li>')
    index = ("<!doctype html><html><head><meta charset='utf-8'><title>unclip-lab: the course</title>"
             "<style>body{font-family:sans-serif;max-width:46em;margin:2em auto;line-height:1.4}"
             "li{margin-bottom:1em}p{margin:.2em 0;color:#444}</style></head><body>"
             "<h1>unclip-lab: unCLIP rebuilt, the course</h1>"
             "<p>Every notebook as committed, with its executed outputs (nothing runs here). To run them: "
             "<code>make lab</code>.</p><ol>" + "".join(rows) + "</ol></body></html>\n")
    (out / "index.html").write_text(index)
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", default="notebooks", type=Path)
    parser.add_argument("--out", default="site", type=Path)
    args = parser.parse_args(argv)
    try:
        pages = build_site(args.notebooks, args.out)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(pages)} pages and {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Build a notebook from a percent-format script (how notebooks/*.ipynb are written).

    python scripts/py2nb.py src.py notebooks/04_priors.ipynb

Cells start at "# %%" (code) or "# %% [md]" (markdown, each line's leading "# " dropped).
The notebook is written unexecuted; run it with
    CI=1 jupyter nbconvert --to notebook --execute --inplace notebooks/04_priors.ipynb
"""
from __future__ import annotations

import sys

import nbformat


def convert(source: str) -> nbformat.NotebookNode:
    cells, kind, lines = [], None, []

    def flush():
        text = "\n".join(lines).strip("\n")
        if kind is not None and text:
            cells.append(nbformat.v4.new_markdown_cell(text) if kind == "md" else nbformat.v4.new_code_cell(text))

    for line in source.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("md" if "[md]" in line or "[markdown]" in line else "code"), []
        elif kind == "md":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        elif kind is not None:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return nb


if __name__ == "__main__":
    src, dst = sys.argv[1:3]
    nbformat.write(convert(open(src).read()), dst)
    print(f"wrote {dst}")

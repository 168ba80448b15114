"""The notebooks' prose agrees with the figures it quotes: every decimal figure in a markdown
cell that cites BENCHMARKS.md (a share like 97.5%, a PSNR like 55.2 dB, a cosine like 0.920)
is in BENCHMARKS.md. Figures that depend on a run are rendered from computed values in code
cells instead, so they cannot drift."""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DECIMAL = re.compile(r"(?<![\w.])(\d+\.\d+)(?=\s*(%|dB|\b))")


def benchmark_cells():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            text = "".join(cell["source"])
            if cell["cell_type"] == "markdown" and "BENCHMARKS.md" in text:
                yield path.name, i, text


def test_figures_cited_from_benchmarks_are_in_benchmarks():
    bench = (ROOT / "BENCHMARKS.md").read_text()
    missing = []
    for name, i, text in benchmark_cells():
        for number, _unit in DECIMAL.findall(re.sub(r"\$[^$]*\$", "", text)):   # not inside maths
            if number not in bench:
                missing.append(f"{name} cell {i}: {number}")
    assert not missing, "figures quoted as BENCHMARKS.md's but not in it:\n" + "\n".join(missing)


def test_the_check_can_fail():
    assert DECIMAL.findall("shape 98.6%, 58.5 dB, cosine 0.920 and 3 bits") == [("98.6", "%"), ("58.5", "dB"),
                                                                                ("0.920", "")]

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


def _progress_fallback():
    import importlib.util

    spec = importlib.util.spec_from_file_location("progress_fallback", ROOT / "scripts" / "progress_fallback.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_progress_bars_show_where_they_ended_without_widgets():
    """A viewer without widgets (GitHub, `make site`) shows a bar's text/plain: it must be the
    final state scripts/progress_fallback.py writes, not the "0%" tqdm wrote at the start."""
    fallback = _progress_fallback()
    frozen = [f"{path.name} cell {i}: {''.join(data.get('text/plain', ''))[:60]!r}"
              for path in sorted((ROOT / "notebooks").glob("*.ipynb"))
              for i, data, final in fallback.bars(json.loads(path.read_text()))
              if "".join(data.get("text/plain", "")) != final]
    assert not frozen, ("progress bars whose plain text is not their final state (run "
                        "`python scripts/progress_fallback.py NOTEBOOK`):\n" + "\n".join(frozen))


def test_a_finished_bar_reads_as_finished():
    state = {"box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_a", "IPY_MODEL_b", "IPY_MODEL_c"]}},
             "a": {"model_name": "HTMLModel", "state": {"value": "clip\u2007(shapes):\u2007100%"}},
             "b": {"model_name": "FloatProgressModel", "state": {"value": 150.0, "max": 300.0}},
             "c": {"model_name": "HTMLModel", "state": {"value": "\u2007150/300\u2007[00:10&lt;00:10]"}}}
    assert _progress_fallback().bar_text(state, "box") == "clip (shapes): 100%|█████     | 150/300 [00:10<00:10]"
    assert _progress_fallback().bar_text(state, "a") is None


def _contains(text: str, number: str) -> bool:
    """number appears in text as a whole figure ('3.4' is not found in '3.44' or '13.4')."""
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", text) is not None


def _notebook_outputs(number: str) -> str:
    """The text a committed notebook shows: its printed, plain and markdown outputs."""
    (path,) = (ROOT / "notebooks").glob(f"{number}_*.ipynb")
    parts = []
    for cell in json.loads(path.read_text())["cells"]:
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            data = out.get("data", {})
            parts += ["".join(data.get(kind, "")) for kind in ("text/plain", "text/markdown")]
    return "\n".join(parts)


def test_readme_claims_table_quotes_its_sources():
    """The README's claims table: each shapes figure is in BENCHMARKS.md; each emoji figure is in
    the committed outputs of the notebook its cell names ("... notebook 13)"), else in BENCHMARKS.md."""
    readme, bench = (ROOT / "README.md").read_text(), (ROOT / "BENCHMARKS.md").read_text()
    table = readme.split("<!-- claims -->")[1].split("<!-- /claims -->")[0]
    rows = [line.split(" | ") for line in table.strip().splitlines()[2:]]
    assert len(rows) >= 10 and all(len(r) == 4 for r in rows), "the claims table lost its shape"
    missing = []
    for claim, shapes, emoji, _verdict in rows:
        cited = re.search(r"notebook (\d\d)\)", emoji)
        benchmarks = (bench, "BENCHMARKS.md")
        emoji_source = (_notebook_outputs(cited.group(1)), cited.group(0)[:-1]) if cited else benchmarks
        for cell, (text, name) in ((shapes, benchmarks), (emoji, emoji_source)):
            missing += [f"{claim.strip('| ')}: {n} not in {name}" for n, _ in DECIMAL.findall(cell)
                        if not _contains(text, n)]
    assert not missing, "claims-table figures not found in their sources:\n" + "\n".join(missing)


def test_whole_figures_only():
    assert _contains("margin 0.017, 3.4%", "3.4") and not _contains("3.44M parameters", "3.4")
    assert not _contains("13.4 dB", "3.4")

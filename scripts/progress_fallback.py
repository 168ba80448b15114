"""Give each progress bar of an executed notebook a plain-text form that shows where it ended.

A tqdm.auto bar in a notebook is a widget: JupyterLab redraws it from the saved widget state
(300/300), but every viewer without widgets (GitHub, nbviewer, `make site`, a diff) shows the
output's text/plain fallback, which tqdm writes once, when the bar is created: a frozen "0%".
This rewrites that fallback from the saved final state ("clip (shapes): 100%|##########| 300/300
[01:38<00:00, ...]"). `make notebooks-full` runs it after executing each notebook.

    python scripts/progress_fallback.py notebooks/01_world_and_clip.ipynb [...]
"""
from __future__ import annotations

import html
import json
import sys
from pathlib import Path

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _text(value: str) -> str:
    return html.unescape(value).replace("\u2007", " ").strip()


def bar_text(state: dict, model_id: str, width: int = 10) -> str | None:
    """The final text of one tqdm widget (an HBox of label, progress bar, counts), or None if
    the model is not such a bar."""
    box = state.get(model_id, {})
    children = [c.removeprefix("IPY_MODEL_") for c in box.get("state", {}).get("children", [])]
    models = [state.get(c, {}) for c in children]
    if box.get("model_name") != "HBoxModel" or [m.get("model_name") for m in models] != \
            ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    left, bar, right = (m["state"] for m in models)
    done = min(max(bar.get("value", 0) / bar["max"], 0.0), 1.0) if bar.get("max") else 0.0
    filled = round(done * width)
    return f"{_text(left.get('value', ''))}|{'█' * filled}{' ' * (width - filled)}| {_text(right.get('value', ''))}"


def bars(nb: dict):
    """Each progress bar of a notebook: (cell index, its output's data, its final text)."""
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                text = bar_text(state, data[WIDGET_VIEW]["model_id"])
                if text is not None:
                    yield i, data, text


def rewrite(path: str | Path) -> int:
    """Rewrite a notebook's progress-bar fallbacks in place; returns how many changed."""
    path = Path(path)
    nb = json.loads(path.read_text())
    changed = 0
    for _, data, text in bars(nb):
        if data.get("text/plain") != [text]:
            data["text/plain"] = [text]
            changed += 1
    if changed:
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: {rewrite(name)} progress bar(s) rewritten")

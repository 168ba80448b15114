"""The notebooks' exercises: checks that speak to students, and the student versions.

Each of notebooks 01-09 ends with an "Exercises" section in nbgrader's format: a setup cell,
then per exercise a solution cell (the answer between `### BEGIN SOLUTION` and
`### END SOLUTION`, nbgrader metadata `solution: true`) and a locked autograder cell of
checks (`grade: true`, with points). Instructors with nbgrader run `nbgrader
generate_assignment` on them as they are; without it,

    python -m unclip_lib.exercises notebooks student      # or: make student

writes the student versions: every solution region replaced by `raise NotImplementedError()`
(nbgrader's own stub) and outputs cleared. In a student version every check fails with a
sentence naming the exercise (`attempt` turns the stub's NotImplementedError into one), and
passes once the answer is right.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
EXERCISES_HEADING = "## Exercises"


class ExerciseError(AssertionError):
    """A failed exercise check (an AssertionError, so nbgrader counts it as a failed test)."""


def attempt(exercise: str, fn, *args, **kwargs):
    """fn(*args, **kwargs), the student's function called by a check; if it is not written
    yet (NotImplementedError), an ExerciseError that says so and where."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise ExerciseError(f"exercise {exercise}: `{getattr(fn, '__name__', fn)}` is not written yet; replace "
                            f"`raise NotImplementedError()` in the cell above with your answer") from None


def check_close(exercise: str, got, expected, what: str, atol: float = 1e-5, hint: str = "") -> None:
    """Raise ExerciseError unless `got` equals `expected` (tensors, arrays or numbers) within
    atol, saying by how much it is off and, if given, what to check."""
    import torch

    got_t = torch.as_tensor(got, dtype=torch.float64) if not isinstance(got, torch.Tensor) else got.double()
    exp_t = (torch.as_tensor(expected, dtype=torch.float64) if not isinstance(expected, torch.Tensor)
             else expected.double())
    if got_t.shape != exp_t.shape:
        raise ExerciseError(f"exercise {exercise}: {what} has shape {list(got_t.shape)}, expected "
                            f"{list(exp_t.shape)}{'; ' + hint if hint else ''}")
    same_inf = torch.isinf(got_t) & torch.isinf(exp_t) & (got_t.sign() == exp_t.sign())
    diff = torch.where(same_inf, torch.zeros_like(got_t), (got_t - exp_t).abs())
    worst = float(diff.max()) if diff.numel() else 0.0
    if not worst <= atol:      # also catches NaN
        raise ExerciseError(f"exercise {exercise}: {what} is off by {worst:.3g} (largest difference; allowed "
                            f"{atol:g}){'; ' + hint if hint else ''}")


# ----------------------------------------------------------------------------- notebooks

def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def exercise_cells(nb: dict) -> list[dict]:
    """The cells of a notebook's exercises section (from the "## Exercises" heading on)."""
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown" and _source(cell).lstrip().startswith(EXERCISES_HEADING):
            return nb["cells"][i:]
    return []


def grading(cell: dict) -> dict:
    """The cell's nbgrader metadata ({} when it has none)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def strip_solutions(source: str) -> str:
    """Replace every BEGIN/END SOLUTION region by nbgrader's stub, at the region's indentation."""
    out, inside = [], False
    for line in source.split("\n"):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"nested '{BEGIN}'")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + s for s in STUB)
        elif marker == END:
            if not inside:
                raise ValueError(f"'{END}' without '{BEGIN}'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"'{BEGIN}' without '{END}'")
    return "\n".join(out)


def student_version(nb: dict) -> dict:
    """A copy of the notebook with its solutions stubbed and every output cleared."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            source = _source(cell)
            if BEGIN in source:
                cell["source"] = strip_solutions(source)
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def write_student_versions(notebooks: str | Path, out: str | Path) -> list[Path]:
    """Student versions of every notebook in `notebooks` that has exercises, written to `out`."""
    notebooks, out = Path(notebooks), Path(out)
    if not notebooks.is_dir():
        raise FileNotFoundError(f"{notebooks} is not a folder of notebooks")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(notebooks.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        if not any(BEGIN in _source(c) for c in nb["cells"] if c["cell_type"] == "code"):
            continue
        target = out / path.name
        target.write_text(json.dumps(student_version(nb), indent=1, ensure_ascii=False) + "\n")
        written.append(target)
    return written


def exercise_ids(nb: dict) -> list[str]:
    """The grade ids of a notebook's solution cells, in order."""
    return [grading(c)["grade_id"] for c in exercise_cells(nb) if grading(c).get("solution")]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m unclip_lib.exercises NOTEBOOKS_DIR OUT_DIR", file=sys.stderr)
        return 2
    try:
        written = write_student_versions(*args)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    count = sum(len(exercise_ids(json.loads(p.read_text()))) for p in written)
    print(f"wrote {len(written)} student notebooks ({count} exercises) to {args[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

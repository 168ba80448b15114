"""The notebooks' exercises: the solutions pass their checks, and in the student versions
(solutions stubbed, as `make student` writes them) every check fails with its own message."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from unclip_lib.exercises import (BEGIN, END, exercise_cells, exercise_ids, grading, strip_solutions,
                                  student_version)

ROOT = Path(__file__).resolve().parents[1]
COURSE = sorted((ROOT / "notebooks").glob("0[1-9]_*.ipynb"))


def _code(cells):
    return [c for c in cells if c["cell_type"] == "code"]


def _run(cells) -> list[tuple[dict, BaseException | None]]:
    """Execute cells in one namespace, as a kernel would; (cell, exception or None) per cell."""
    namespace: dict = {"__name__": "__exercises__"}
    out = []
    for cell in _code(cells):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        try:
            exec(compile(source, grading(cell).get("grade_id", "cell"), "exec"), namespace)
            out.append((cell, None))
        except Exception as err:   # noqa: BLE001 - the test judges which failures are right
            out.append((cell, err))
    return out


def test_every_course_notebook_has_two_exercises_in_nbgrader_format():
    assert len(COURSE) == 9
    for path in COURSE:
        nb = json.loads(path.read_text())
        ids = exercise_ids(nb)
        assert len(ids) >= 2, f"{path.name}: {ids}"
        checks = [grading(c)["grade_id"] for c in exercise_cells(nb) if grading(c).get("grade")]
        assert checks == [i.replace("exercise_", "check_") for i in ids], path.name
        for cell in _code(exercise_cells(nb)):
            g = grading(cell)
            assert g.get("schema_version") == 3 and g.get("grade_id"), (path.name, cell["source"][:60])
            source = "".join(cell["source"])
            assert (BEGIN in source) == bool(g["solution"]) == (END in source), (path.name, g["grade_id"])
            if g["grade"]:
                assert g["points"] > 0 and g["locked"]


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem[:2])
def test_solutions_pass_and_student_versions_fail_with_their_messages(path):
    nb = json.loads(path.read_text())
    solved = _run(exercise_cells(nb))
    failed = [(grading(c).get("grade_id"), repr(e)) for c, e in solved if e is not None]
    assert not failed, f"{path.name}: the solutions fail their checks: {failed}"

    student = _run(exercise_cells(student_version(nb)))
    checks = [(c, e) for c, e in student if grading(c).get("grade")]
    assert len(checks) >= 2
    for cell, err in checks:
        ident = grading(cell)["grade_id"].removeprefix("check_").replace("_", ".")
        assert isinstance(err, AssertionError), f"{path.name} {ident}: the check passed or crashed: {err!r}"
        assert str(err).startswith(f"exercise {ident}: "), str(err)
        assert "not written yet" in str(err)
    setup_errors = [e for c, e in student if not grading(c).get("grade") and e is not None]
    assert not setup_errors, setup_errors


def test_stubbing_keeps_the_signature_and_indentation():
    source = f"def f(x):\n    \"\"\"doc\"\"\"\n    {BEGIN}\n    return x + 1\n    {END}\nprint(f)"
    assert strip_solutions(source) == ("def f(x):\n    \"\"\"doc\"\"\"\n    # YOUR CODE HERE\n"
                                       "    raise NotImplementedError()\nprint(f)")
    with pytest.raises(ValueError, match="without"):
        strip_solutions(f"{BEGIN}\nx = 1\n")
    with pytest.raises(ValueError, match="without"):
        strip_solutions(f"x = 1\n{END}\n")


def test_make_student_writes_stubbed_notebooks_without_outputs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "unclip_lib.exercises", str(ROOT / "notebooks"), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    written = sorted(tmp_path.glob("*.ipynb"))
    assert [p.name for p in written] == [p.name for p in COURSE]
    assert "(18 exercises)" in out.stdout
    for path in written:
        nb = json.loads(path.read_text())
        code = json.dumps(_code(nb["cells"]))
        assert BEGIN not in code and END not in code and "raise NotImplementedError()" in code
        assert all(not c.get("outputs") for c in _code(nb["cells"]))
    bad = subprocess.run([sys.executable, "-m", "unclip_lib.exercises", str(tmp_path / "nowhere"), str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "is not a folder of notebooks" in bad.stderr

"""The project's own files agree with each other."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _names(reqs):
    return {re.split(r"[<>=!~ \[]", r.strip())[0].lower().replace("_", "-") for r in reqs}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"]) | _names(project["optional-dependencies"]["test"])
    env = []
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines():  # not the channel list
        item = line.strip()
        if item.startswith("- ") and not item.endswith(":"):
            name = item[2:].strip()
            if not name.startswith(("-e", "python", "pip")) or name.startswith("pillow"):
                env.append(name)
    assert _names(env) == wanted


def test_readme_names_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_every_notebook_is_stored_small():
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert nb.stat().st_size < 1_500_000, f"{nb.name} stores large outputs"


def test_every_shipped_checkpoint_is_present_and_small():
    from unclip_lib.checkpoints import SHIPPED, read_metadata, shipped_path

    total = 0
    for name, (kind, _) in SHIPPED.items():
        path = shipped_path(name)
        assert read_metadata(path)["kind"] == kind, name
        total += path.stat().st_size
    # both worlds' weights together stay under the project's budget of 150 MB
    assert total < 150e6, f"shipped weights take {total / 1e6:.1f} MB; the budget of both worlds is 150 MB"

"""Pin the shipped weights: rewrite data/SHA256SUMS with the sha256 of every shipped file, and
the readable `.json` beside each file from the file's own metadata.

Every load of a shipped file checks it against its pin, so after replacing a file in data/
(a retrained decoder, say) run this once and commit data/SHA256SUMS and the `.json` with the
new file:

    python scripts/pin_weights.py            # rewrite the pins, print them
    python scripts/pin_weights.py --check    # only compare; exit 1 naming any file that differs

`cd data && sha256sum -c SHA256SUMS` checks the same pins without Python.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unclip_lib.checkpoints import (PINS_FILE, SHIPPED, data_dir, file_sha256, read_pins,  # noqa: E402
                                    readable_twin, write_pins, write_readable_twin)


def check(folder: Path) -> list[str]:
    """The shipped files that are missing, unpinned or differ from their pin."""
    pins = read_pins(folder)
    wrong = []
    for _, stem in SHIPPED.values():
        name = f"{stem}.safetensors"
        path = folder / name
        if not path.exists():
            wrong.append(f"{name}: missing")
        elif name not in pins:
            wrong.append(f"{name}: not pinned")
        elif file_sha256(path) != pins[name]:
            wrong.append(f"{name}: differs from its pin")
        elif not _twin_matches(path):
            wrong.append(f"{stem}.json: does not match {name}'s metadata")
    return wrong


def _twin_matches(path: Path) -> bool:
    side = path.with_suffix(".json")
    try:
        return json.loads(side.read_text()) == readable_twin(path)
    except (OSError, ValueError):        # missing or not JSON: rewritten like a stale one
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare the files with their pins, write nothing")
    parser.add_argument("--data", type=Path, default=None, help="the weights folder (default: data/)")
    args = parser.parse_args(argv)
    folder = args.data or data_dir()
    if args.check:
        wrong = check(folder)
        for line in wrong:
            print(line, file=sys.stderr)
        if wrong:
            print("re-pin with: python scripts/pin_weights.py (or restore the files with git checkout)",
                  file=sys.stderr)
        return 1 if wrong else 0
    missing = [f"{stem}.safetensors" for _, stem in SHIPPED.values() if not (folder / f"{stem}.safetensors").exists()]
    if missing:
        print(f"cannot pin: missing {missing} in {folder}", file=sys.stderr)
        return 1
    for name, digest in sorted(write_pins(folder).items()):
        print(f"{digest}  {name}")
        if not _twin_matches(folder / name):
            print(f"rewrote {write_readable_twin(folder / name).name} from {name}'s metadata")
    print(f"wrote {folder / PINS_FILE}; commit it with the weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())

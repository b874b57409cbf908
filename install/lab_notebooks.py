"""The lab's copy of the example notebooks: `install/setup lab` serves DEST (notebooks/ in the
repository, ignored by git), never the tracked examples/, which JupyterLab would rewrite as it
autosaves.

    python install/lab_notebooks.py EXAMPLES DEST

- A notebook missing from DEST is copied from EXAMPLES.
- DEST/.loupe-examples.json (the stamp) keeps the SHA-256 of each notebook as it was copied.
  A copy whose bytes still have that hash is untouched: when the shipped notebook changed, it
  is replaced by the new one. A copy the user changed (saved edits or outputs) is never
  overwritten; when its shipped notebook changed, a line says where the new one is.
- DEST/models is a symbolic link to EXAMPLES/models (relative), so that the notebooks'
  `loupe.load("models/default")` resolves in the copy; models are not copied.
Prints one line per notebook copied, refreshed or kept, and exits 0; an error exits 1.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import sys

STAMP = ".loupe-examples.json"


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sync(examples: pathlib.Path, dest: pathlib.Path) -> list[str]:
    """Brings dest up to date with examples; returns what it did, one line each."""
    dest.mkdir(parents=True, exist_ok=True)
    stamp_path = dest / STAMP
    stamp: dict[str, str] = {}
    if stamp_path.exists():
        try:
            stamp = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            stamp = {}  # a damaged stamp: every existing copy counts as the user's
    said = []
    for src in sorted(examples.glob("*.ipynb")):
        name = src.name
        copy = dest / name
        shipped = sha256(src)
        if not copy.exists():
            shutil.copyfile(src, copy)
            stamp[name] = shipped
            said.append(f"copied {name}")
            continue
        current = sha256(copy)
        if current == shipped:
            stamp[name] = shipped
        elif stamp.get(name) == current:
            shutil.copyfile(src, copy)
            stamp[name] = shipped
            said.append(f"refreshed {name} (the shipped notebook changed; your copy was untouched)")
        elif stamp.get(name) != shipped:
            said.append(f"kept your edited {name}; the shipped notebook changed: {src}")
    models = dest / "models"
    if not models.exists() and not models.is_symlink():
        models.symlink_to(os.path.relpath(examples / "models", dest))
        said.append(f"linked models -> {os.readlink(models)}")
    tmp = stamp_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    tmp.replace(stamp_path)
    return said


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 1
    examples, dest = pathlib.Path(argv[1]).resolve(), pathlib.Path(argv[2])
    try:
        for line in sync(examples, dest):
            print(f"notebooks: {line}")
    except OSError as e:
        print(f"lab_notebooks: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

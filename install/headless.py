"""Execute every notebook in a folder on the loupe kernel and write the executed copies.

Usage: python install/headless.py EXAMPLES_DIR OUT_DIR [--kernel NAME] [--timeout SECONDS]

Exit status 1 when any cell of any notebook raised an error (the executed copy, with the
error in it, is still written), 0 otherwise. Used by `install/setup headless`.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("examples", type=pathlib.Path)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--kernel", default="loupe")
    ap.add_argument("--timeout", type=int, default=600, help="per cell, seconds")
    args = ap.parse_args()

    notebooks = sorted(args.examples.rglob("*.ipynb"))
    notebooks = [p for p in notebooks if ".ipynb_checkpoints" not in p.parts]
    if not notebooks:
        print(f"no notebooks in {args.examples}", file=sys.stderr)
        return 1
    failed = []
    for path in notebooks:
        rel = path.relative_to(args.examples)
        dest = args.out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, kernel_name=args.kernel, timeout=args.timeout,
                                allow_errors=False, resources={"metadata": {"path": str(path.parent)}})
        t0 = time.monotonic()
        try:
            client.execute()
            status = "ok"
        except CellExecutionError as e:
            status = "ERROR"
            failed.append(str(rel))
            print(str(e)[-2000:], file=sys.stderr)
        except Exception as e:  # kernel died, timeout, ...
            status = "ERROR"
            failed.append(str(rel))
            print(f"{type(e).__name__}: {e}", file=sys.stderr)
        nbformat.write(nb, dest)
        print(f"{status:5s} {rel}  ({time.monotonic() - t0:.1f} s) -> {dest}")
    if failed:
        print(f"{len(failed)} notebook(s) with errors: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

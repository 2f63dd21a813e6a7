"""`python -m shared.schemas [--check]`: regenerate (or check) the pinned event schemas and AsyncAPI."""

from __future__ import annotations

import sys

from shared.schemas import HERE, drift, write


def main(argv: list[str]) -> int:
    if "--check" in argv:
        stale = drift()
        for path in stale:
            print(f"out of date: {path.relative_to(HERE.parent.parent)}")
        if stale:
            print("run `make schemas` (python -m shared.schemas) and commit the result")
        return 1 if stale else 0
    for path in write():
        print(f"wrote {path.relative_to(HERE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`make bench`: every benchmark script in this directory, one after the other, each in its own
process. Arguments after `--` go to every script (e.g. `-- --images 500`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Not benchmarks of this checkout alone: upload_ab.py compares it with another (`--base DIR`),
# by hand.
BY_HAND = ("run.py", "__init__.py", "upload_ab.py")


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    failed = []
    for script in sorted(HERE.glob("*.py")):
        if script.name in BY_HAND:
            continue
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script), *extra]).returncode != 0:
            failed.append(script.name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

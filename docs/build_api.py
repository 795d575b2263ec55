"""Build the API reference (HTML) from the docstrings with pdoc, a standard tool.

    pip install pdoc && python docs/build_api.py [OUTPUT_DIR]      # default: docs/api

The reference is generated from the code, so it cannot drift from it; the output folder is not kept
in the repository. The docstrings are written in reStructuredText.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "api"
    return subprocess.call([sys.executable, "-m", "pdoc", "--docformat", "restructuredtext", "--output-directory",
                            str(out), "relumilp"], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())

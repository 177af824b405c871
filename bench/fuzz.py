"""The long fuzzing profile: many more generated archives, folders and settings than CI tries.

Runs ``tests/test_fuzz.py`` with ``TL_FUZZ_PROFILE=long`` (random, 1,500 archives and folders,
150 training settings) and prints Hypothesis's statistics: how many examples each property
tried and whether any failed. A failure prints the smallest input that breaks the property;
keep it as an ordinary test at the end of tests/test_fuzz.py once it is fixed.

Usage: .venv/bin/python bench/fuzz.py [extra pytest arguments]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/test_fuzz.py", "--hypothesis-show-statistics", *sys.argv[1:]]  # fmt: skip
    env = {**os.environ, "TL_FUZZ_PROFILE": "long"}
    sys.exit(subprocess.run(command, cwd=REPO, env=env, check=False).returncode)

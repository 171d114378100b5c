"""Start-up time of the command line: ``bcosdiff --help`` and an argument error (one run).

    python benchmarks/cli_startup.py [--runs 7] [--src DIR]

Each command runs ``--runs`` times in a fresh interpreter; the script prints the median and
the range in seconds and whether torch was imported. ``--src`` puts another checkout's
``src`` first on the path (to time an earlier version in the same sitting).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "bcosdiff --help": ["--help"],
    "bcosdiff generate a --steps x (argument error)": ["generate", "a", "--steps", "x"],
}
PROBE = (
    "import sys\n"
    "from bcosdiff.cli import run\n"
    "sys.argv = ['bcosdiff', *sys.argv[1:]]\n"
    "try:\n    run()\nexcept SystemExit:\n    pass\n"
    "sys.stderr.write('torch imported: %s\\n' % ('torch' in sys.modules))\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--src", help="a checkout's src directory to time instead")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = args.src
    for label, argv in COMMANDS.items():
        times, torch = [], ""
        for _ in range(args.runs):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env
            )
            times.append(time.perf_counter() - start)
            torch = done.stderr.strip().splitlines()[-1]
        print(
            f"{label}: median {statistics.median(times):.2f} s "
            f"(range {min(times):.2f}-{max(times):.2f} s, {args.runs} runs); {torch}"
        )


if __name__ == "__main__":
    main()

"""Regenerate the sample outputs of the docs from real runs, or check them.

    python docs/samples/regenerate.py            # write docs/samples/*.txt
    python docs/samples/regenerate.py --check    # run again, compare structure, exit 1 if off
    python docs/samples/regenerate.py --only quickstart-run campaign-order

Every sample runs the documented commands (``pytest --gold ...`` on an embedded cluster,
or a local profile's cluster) in a scratch directory, from the files in this directory
(``sims/``, ``faults/``) and the repository's ``example_sims/``. What differs between
machines (paths, pids, addresses, host name) is replaced by fixed stand-ins; numbers and
times are as measured. The docs include the files in ``output/`` with ``literalinclude``.
``--check`` compares a fresh run with each file line by line, numbers and result order
aside (see samplecheck.py); CI runs it. Needs pytest-gold's test extras (numpy).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from catalog import SAMPLES  # noqa: E402
from samplecheck import differences  # noqa: E402
from scratch import ROOT, Scratch  # noqa: E402

#: Where the sample files are (the docs include them from here).
OUTPUT = HERE / "output"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--only", nargs="*", default=[], help="sample makers to run")
    options = parser.parse_args(argv)
    makers = options.only or list(SAMPLES)
    unknown = set(makers) - set(SAMPLES)
    if unknown:
        parser.error(f"unknown sample makers: {', '.join(sorted(unknown))}")
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gold-samples-") as base:
        for maker_name in makers:
            maker = SAMPLES[maker_name]
            scratch = Scratch(Path(base) / maker_name, maker.shown)
            made = maker(scratch)
            for name, text in made.items():
                text = scratch.present(text)
                target = OUTPUT / f"{name}.txt"
                if not options.check:
                    OUTPUT.mkdir(exist_ok=True)
                    target.write_text(text)
                    print(f"wrote {target.relative_to(ROOT)}", file=sys.stderr)
                    continue
                if not target.exists():
                    problems.append(f"{name}: no sample file {target.relative_to(ROOT)}")
                    continue
                problems += [f"{name}: {p}" for p in differences(target.read_text(), text)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(
            "The docs' samples do not match a fresh run: run "
            "'python docs/samples/regenerate.py' and review the diff.",
            file=sys.stderr,
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

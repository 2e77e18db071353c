"""Coverage-guided fuzzing of ``fuzz_feed.one_input`` with atheris (libFuzzer).

Only milterkit is instrumented (instrumenting the whole standard library takes a minute to
start). libFuzzer's options follow; give it a *copy* of the corpus, since it adds to it:

    cp -r tests/fuzz/corpus /tmp/corpus
    python tests/fuzz/atheris_run.py -max_total_time=300 -print_final_stats=1 /tmp/corpus
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["milterkit"]):
    import fuzz_feed


def main() -> None:
    logging.disable(logging.CRITICAL)  # every protocol error logs a line: millions of them
    atheris.Setup(sys.argv, fuzz_feed.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

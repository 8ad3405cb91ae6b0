"""Rewrite the bundled datasets: ``python -m axon.feedback.make_data [OUT_DIR]``.

Without OUT_DIR it writes ``axon/feedback/data/instructions_{train,val,heldout}.jsonl`` and
``arithmetic_{train,val,heldout}.jsonl`` in place (``axon.feedback.datasets.write_bundled`` and
``write_bundled_arithmetic``); tests/feedback checks that the shipped files are exactly what this
writes.
"""

import sys

from axon.feedback.datasets import BUNDLED_DIR, write_bundled, write_bundled_arithmetic

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else BUNDLED_DIR
    for path in [*write_bundled(out), *write_bundled_arithmetic(out)]:
        print(path, path.stat().st_size, "bytes")

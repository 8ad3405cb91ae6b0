"""Rewrite the bundled instruction dataset: ``python -m axon.feedback.make_data [OUT_DIR]``.

Without OUT_DIR it writes ``axon/feedback/data/instructions_{train,val,heldout}.jsonl`` in place
(``axon.feedback.datasets.write_bundled``); tests/feedback checks that the shipped files are
exactly what this writes.
"""

import sys

from axon.feedback.datasets import BUNDLED_DIR, write_bundled

if __name__ == "__main__":
    for path in write_bundled(sys.argv[1] if len(sys.argv) > 1 else BUNDLED_DIR):
        print(path, path.stat().st_size, "bytes")

"""Explain a fine-tuned QA model layer by layer (Integrated Gradients), then analyse and report.

    python analyze.py --layers all                     # latest complete run in runs/, its dev split
    python analyze.py --run runs/NAME --num-examples 1000 --steps 50
    python analyze.py --help                           # every flag

The app's callbacks (the shard writer, the heap trim, the progress bar) come from `callbacks/` beside this
script; the library `lit_rcqa` takes them as an argument and never imports them.
"""

import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import callbacks  # noqa: E402  (after the environment is set)
from lit_rcqa import analyze  # noqa: E402


def main(argv=None) -> int:
    return analyze.main(argv, ig_callbacks=callbacks.ig_callbacks)


if __name__ == "__main__":
    sys.exit(main())

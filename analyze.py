"""Explain a fine-tuned QA model layer by layer (Integrated Gradients), then analyse and report.

    python analyze.py --layers all                     # latest complete run in runs/, its dev split
    python analyze.py --config configs/analyze.yaml --ig.tolerance 0.005   # the file, one setting changed
    python analyze.py --run runs/NAME --loop.num_examples 1000 --ig.steps 50   # (or --num-examples, --steps)
    python analyze.py --help                           # every option (groups ig, loop, analysis), described

The settings are `lit_rcqa/analyze_config.py`'s typed tree; the resolved ones are saved beside the outputs as
analyze_config.yaml.

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

"""Explain a fine-tuned QA model layer by layer (Integrated Gradients), then analyse and report.

    python analyze.py --layers all                     # latest complete run in runs/, its dev split
    python analyze.py --run runs/NAME --num-examples 1000 --steps 50
    python analyze.py --help                           # every flag
"""

import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lit_rcqa.analyze import main

if __name__ == "__main__":
    sys.exit(main())

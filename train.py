"""Fine-tune a BERT-family encoder for extractive QA.

    python train.py                                   # embedded MiniLM on the synthetic set (CPU, < 10 min)
    python train.py --config configs/squad_v1.yaml    # SQuAD v1.1
    python train.py validate --config runs/NAME/config.yaml --ckpt_path runs/NAME/checkpoints/best.ckpt
    python train.py --print_config                    # the resolved configuration
"""

import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from callbacks.train_monitors import EveryStepLearningRateMonitor, Throughput
from lit_rcqa.cli import main

if __name__ == "__main__":
    sys.exit(main(monitors=[EveryStepLearningRateMonitor(), Throughput()]))

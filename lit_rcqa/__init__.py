"""lit_rcqa: fine-tune BERT-family encoders for extractive QA and interpret them layer by layer."""

__version__ = "0.1.0"

"""`python train.py fit --help` describes every model., data. and run. option (LightningCLI reads the
descriptions from the `Args:` sections of QAModule's, QADataModule's and RunOptions' docstrings)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from lit_rcqa.cli import build_parser

OPTION = re.compile(r"^  (--(?:model|data|run)\.\w+)")
TYPE_AND_DEFAULT = re.compile(r"\(type: .*?\)", re.S)  # what jsonargparse prints for any option


def option_help(text: str) -> dict[str, str]:
    """{flag: its help text} for the model./data./run. options in an argparse help screen."""
    found: dict[str, str] = {}
    flag = None
    for line in text.splitlines():
        if line.startswith("  --") or (line and not line.startswith(" ")):  # the next option or section
            match = OPTION.match(line)
            flag = match.group(1) if match else None
            if flag:
                rest = line[match.end():].lstrip()
                # "--run.name NAME       The run folder's ..." : the help may start on the option's own line
                parts = re.split(r"\s{2,}", rest, maxsplit=1)
                found[flag] = parts[1] if len(parts) == 2 else ""
        elif flag:
            found[flag] += " " + line.strip()
    return found


@pytest.fixture(scope="module")
def fit_help() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["fit", "--help"])
    return out.getvalue()


def test_every_model_data_and_run_option_has_a_description(fit_help):
    options = option_help(fit_help)
    prefixes = {flag.split(".")[0] for flag in options}
    assert prefixes == {"--model", "--data", "--run"}, prefixes
    assert len([f for f in options if f.startswith("--model.")]) >= 10
    assert len([f for f in options if f.startswith("--data.")]) >= 18
    missing = sorted(flag for flag, text in options.items() if not TYPE_AND_DEFAULT.sub("", text).strip())
    assert not missing, f"options without a description: {missing}"


def test_a_described_option_reads_as_its_docstring_says(fit_help):
    options = option_help(fit_help)
    assert "Peak AdamW learning rate" in options["--model.learning_rate"]
    assert "Tokens per window" in options["--data.max_seq_length"]
    assert "checkpoints/last.ckpt" in options["--run.save_every_n_steps"]

"""jsonargparse's multi-line errors as one line that names the key, says what is wrong and what was given: the one
implementation (`errors.parser_error_line`) behind train.py's flags, a run's config.yaml and analyze.py's flags."""

from __future__ import annotations

import pytest
import yaml

from lit_rcqa.cli import build_parser, read_run_config
from lit_rcqa.errors import UserError


@pytest.fixture(scope="module")
def parser():
    return build_parser(default_configs=False, exit_on_error=False)


@pytest.mark.parametrize("argv, start, why", [
    (["--model.learning_rate", "-1"], "--model.learning_rate: ", "v>0"),                # a restricted type
    (["--data.max_eval_examples", "0"], "--data.max_eval_examples 0: ", "v>0"),         # Optional[...]: a union
    (["--run.logger", "nope"], "--run.logger: ", "nope"),                               # a Literal
    (["--model.no_such_key", "1"], "unrecognized arguments: ", "--model.no_such_key"),  # no such key
])
def test_a_bad_train_flag_is_one_line_naming_the_key_and_why(parser, argv, start, why):
    with pytest.raises(UserError) as err:
        parser.parse_args(["fit", *argv])
    message = str(err.value)
    assert "\n" not in message and message.startswith(start) and why in message, message


def test_a_bad_value_in_a_runs_config_yaml_names_the_file_the_key_and_why(tmp_path):
    from tests.tiny_run import make_tiny_run

    run = make_tiny_run(tmp_path / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"]["learning_rate"] = -1
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(UserError) as err:
        read_run_config(run)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{run / 'config.yaml'}: model.learning_rate: "), message
    assert "v>0" in message, message

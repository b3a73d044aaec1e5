"""The tracker: W&B online exactly when wandb has credentials (no server contacted to decide), else offline and fast."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from lit_rcqa import tracking

# The whole offline run (wandb starting its service process included) took 0.3-7 s on a loaded 2-core
# machine; one request to the unreachable host would wait for a connect timeout (30 s and more) instead.
RUN_SECONDS = 20.0
KEY = "a1b2c3d4e5" * 4  # the shape of a W&B API key (40 characters); never sent anywhere


@pytest.fixture
def clean_home(tmp_path, monkeypatch):
    """A HOME with no netrc and no wandb settings, no WANDB_* variables, the working folder empty."""
    for name in list(os.environ):
        if name.startswith("WANDB_") or name == "NETRC":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


def write_netrc(home: Path, machine: str) -> Path:
    path = home / ".netrc"
    path.write_text(f"machine {machine}\n  login user\n  password {KEY}\n")
    path.chmod(0o600)
    return path


def test_wandb_login_netrc_entry_means_online(clean_home):
    assert tracking.wandb_mode() == "offline"  # nothing yet
    write_netrc(clean_home, "api.wandb.ai")   # what `wandb login` writes
    assert tracking.wandb_mode() == "online"


def test_netrc_named_by_the_NETRC_variable_counts(clean_home, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.setenv("NETRC", str(write_netrc(other, "api.wandb.ai")))
    assert tracking.wandb_mode() == "online"


def test_a_netrc_entry_for_another_host_is_not_credentials(clean_home, monkeypatch):
    write_netrc(clean_home, "example.org")
    assert tracking.wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_BASE_URL", "https://example.org")  # a private W&B server on that host
    assert tracking.wandb_mode() == "online"


def test_api_key_variable_means_online(clean_home, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    assert tracking.wandb_mode() == "online"


def test_offline_settings_win_over_credentials(clean_home, monkeypatch):
    write_netrc(clean_home, "api.wandb.ai")
    settings = clean_home / ".config" / "wandb" / "settings"
    settings.parent.mkdir(parents=True)
    settings.write_text("[default]\nmode = offline\n")  # what `wandb offline` writes
    assert tracking.wandb_mode() == "offline"
    settings.write_text("[default]\n")                  # `wandb online` clears it
    assert tracking.wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert tracking.wandb_mode() == "offline"


def test_without_credentials_a_run_is_offline_and_never_touches_the_network(clean_home, tmp_path, monkeypatch):
    """No credentials: the run is offline. The W&B host and every proxy are an address where a connection hangs
    (TEST-NET-1, never routed): any request would stall the run for wandb's timeouts (tens of seconds)."""
    blackhole = "http://192.0.2.1:9"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, blackhole)
    monkeypatch.setenv("WANDB_BASE_URL", blackhole)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    from lightning.pytorch.loggers import WandbLogger  # noqa: F401  (imported before the clock starts)

    decided = time.perf_counter()
    assert tracking.wandb_mode() == "offline"
    assert time.perf_counter() - decided < 1.0  # the decision reads files only
    started = time.perf_counter()
    logger = tracking.build_logger("wandb", tmp_path / "run", "offline-test", "lit_rcqa-test", job_type="train")
    logger.log_metrics({"x": 1.0}, step=0)
    where = tracking.finish(logger)
    seconds = time.perf_counter() - started
    assert where.startswith("wandb sync ") and "offline-run-" in where
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert seconds < RUN_SECONDS, f"{seconds:.1f} s"


def test_the_wandb_run_opens_at_build_time_and_records_the_package_versions(clean_home, tmp_path, monkeypatch):
    """The run starts in the background when the logger is built (so its start-up overlaps the command's own
    work), before anything is logged; its config names the versions that decide the results."""
    from importlib.metadata import version

    from tests.wandb_records import RunFile, run_file

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = tracking.build_logger("wandb", tmp_path / "run", "early", "lit_rcqa-test", job_type="train")
    logger._starting.join(timeout=120)  # nothing has used the logger yet
    assert logger._experiment is not None, "the W&B run did not open until first use"
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    logger.log_metrics({"x": 1.0}, step=0)
    tracking.finish(logger)
    config = RunFile(run_file(tmp_path / "run")).config
    assert "versions" in config, sorted(config)
    versions = config["versions"]
    assert versions["torch"] == version("torch") and versions["transformers"] == version("transformers")
    assert versions["lightning"] == version("lightning") and versions["wandb"] == version("wandb")


def test_a_failed_background_start_is_raised_where_the_run_is_first_used(clean_home, tmp_path, monkeypatch):
    import wandb

    def refuse(*args, **kwargs):
        raise wandb.errors.UsageError("no run for you")

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(wandb, "init", refuse)
    logger = tracking.build_logger("wandb", tmp_path / "run", "refused", "lit_rcqa-test")
    with pytest.raises(wandb.errors.UsageError, match="no run for you"):
        logger.experiment


def test_an_offline_run_is_complete_on_disk_when_finish_returns(clean_home, tmp_path, monkeypatch):
    """wandb.finish() returns before wandb's service has written the run's last records; `tracking.finish` waits
    for them, so a run folder read (or `wandb sync`-ed) right after it is whole. Several runs in one process:
    the service stays up between them, and one in a few used to be read as a bare header."""
    from lit_rcqa.offline_run import read_records

    from tests.wandb_records import run_file

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for n in range(5):
        logger = tracking.build_logger("wandb", tmp_path / f"run{n}", f"whole{n}", "lit_rcqa-test", job_type="train")
        logger.log_metrics({"x": float(n)}, step=0)
        tracking.finish(logger)
        kinds = [r.WhichOneof("record_type") for r in read_records(run_file(tmp_path / f"run{n}"))]
        assert kinds[:2] == ["header", "run"] and kinds[-1] == "exit", (n, kinds)
        assert "history" in kinds, (n, kinds)


def test_a_run_file_is_complete_only_once_its_exit_record_is_written(tmp_path):
    """The completeness check against files cut where wandb leaves them while writing: header only, a chunk
    cut short, every record but the last."""
    from wandb.proto import wandb_internal_pb2 as pb

    from lit_rcqa import offline_run

    def chunk(record) -> bytes:
        payload = record.SerializeToString()
        return (0).to_bytes(4, "little") + len(payload).to_bytes(2, "little") + bytes([1]) + payload

    header = b":W&B" + (0xBEE1).to_bytes(2, "little") + bytes([0])
    run, exit_ = pb.Record(), pb.Record()
    run.run.run_id = "abc"
    exit_.exit.exit_code = 0
    whole = header + chunk(run) + chunk(exit_)
    path = tmp_path / "run-abc.wandb"
    for data, complete in [(header, False), (header + chunk(run), False), (whole[:-3], False), (whole, True),
                           (whole + bytes(64), True)]:  # wandb preallocates zeros after the last record
        path.write_bytes(data)
        assert offline_run.is_complete(path) is complete, data
    assert [r.WhichOneof("record_type") for r in offline_run.read_records(path)] == ["run", "exit"]
    assert offline_run.wait_complete(tmp_path, timeout=0.1)
    path.write_bytes(header)
    assert not offline_run.wait_complete(tmp_path, timeout=0.1)
    path.write_bytes(b"not a run file")
    assert not offline_run.is_complete(path)


def test_starting_a_run_does_not_import_wandbs_launch_and_public_api(tmp_path):
    """wandb.init ends by importing W&B Launch's input module, only to apply launch inputs staged in this process;
    that import pulls in wandb's public API, whose pydantic models scan every loaded module (1.25 s with torch,
    lightning and transformers loaded, 0.2 s without them). No code of ours stages launch inputs, so the
    import is skipped; a fresh process shows whether it happened."""
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; from lit_rcqa import tracking\n"
        "logger = tracking.build_logger('wandb', Path(sys.argv[1]), 'quiet', 'lit_rcqa-test')\n"
        "logger.log_metrics({'x': 1.0}, step=0); tracking.finish(logger)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('wandb.sdk.launch', 'wandb.apis.public'))))\n")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    env.pop("WANDB_SERVICE", None)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_launch_inputs_staged_in_the_process_are_still_applied(monkeypatch):
    """The skip is exact: once someone has staged W&B Launch inputs (which imports the module), wandb applies
    them to the run as before."""
    from wandb.sdk import wandb_run
    from wandb.sdk.launch.inputs import internal

    tracking._skip_unstaged_launch_inputs()
    published = []
    monkeypatch.setattr(internal, "_publish_job_input", lambda input, run: published.append((input, run)))
    staged = internal.StagedLaunchInputs()
    monkeypatch.setattr(staged, "_staged_inputs", ["an input"])
    run = object()
    wandb_run.Run._detect_and_apply_job_inputs(run)
    assert published == [("an input", run)]

"""Run folders: plain names only, one live process per folder (a lock with the pid), stale locks taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from lit_rcqa import runs
from lit_rcqa.errors import UserError
from lit_rcqa.paths import REPO_ROOT


@pytest.mark.parametrize("name", ["../../escape", "..", ".", "/tmp/abs", "a/b", "a\\b", "", "two\nlines", " x",
                                  "~user"])
def test_a_run_name_that_is_not_a_plain_folder_name_is_refused(tmp_path, name):
    with pytest.raises(UserError, match="run.name") as info:
        runs.open_run(str(tmp_path / "runs"), name, kind="fit", resume=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "runs").exists()  # nothing created, anywhere


@pytest.mark.parametrize("name", ["r1", "20240101-120000-fit", "my_run.v2", "A-b_c.1"])
def test_plain_names_are_accepted(tmp_path, name):
    run_dir = runs.open_run(str(tmp_path / "runs"), name, kind="fit", resume=False)
    try:
        assert run_dir == tmp_path / "runs" / name and runs.read_status(run_dir)["status"] == "running"
    finally:
        runs.close_runs("failed")


HOLDER = """
import sys, time
from lit_rcqa import runs
runs.open_run(sys.argv[1], "r", kind="fit", resume=False)
print("locked", flush=True)
time.sleep(120)
"""


def start_holder(root) -> subprocess.Popen:
    """Another process that opens runs/r and keeps running, as a second train.py would."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for key in ("LOCAL_RANK", "NODE_RANK"):
        env.pop(key, None)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_folder_in_use_by_a_live_process_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys):
    root = tmp_path / "runs"
    holder = start_holder(root)
    try:
        with pytest.raises(UserError, match=rf"in use by process {holder.pid}") as info:
            runs.open_run(str(root), "r", kind="fit", resume=True)
        assert "\n" not in str(info.value)
        assert runs.read_status(root / "r")["status"] == "running"  # the live run's marker is left alone
    finally:
        holder.kill()
        holder.wait()
    # The holder died without cleaning up (SIGKILL): its lock is stale; taking it over says so in one line.
    run_dir = runs.open_run(str(root), "r", kind="fit", resume=True)
    try:
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(holder.pid) in err[0] and "taking over" in err[0], err
    finally:
        runs.close_runs("failed")
    # A lock released cleanly is not stale: no message the next time.
    runs.open_run(str(root), "r", kind="fit", resume=True)
    runs.close_runs("failed")
    assert capsys.readouterr().err == ""
    assert runs.read_status(run_dir)["status"] == "failed"


def test_ddp_children_are_not_refused_by_their_launchers_lock(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    holder = start_holder(root)
    try:
        # A process Lightning launched for rank 1 re-runs the script with LOCAL_RANK set: it joins the run.
        monkeypatch.setenv("LOCAL_RANK", "1")
        run_dir = runs.open_run(str(root), "r", kind="fit", resume=False)
        assert run_dir == root / "r"
        runs.close_runs("failed")
        assert runs.read_status(run_dir)["status"] == "running"  # a child never writes the launcher's status
    finally:
        holder.kill()
        holder.wait()


def test_two_processes_starting_at_once_never_both_get_the_folder(tmp_path):
    root = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    script = ("import sys, time\nfrom lit_rcqa import runs\nfrom lit_rcqa.errors import UserError\n"
              "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
              "try:\n    runs.open_run(sys.argv[1], 'r', kind='fit', resume=True)\n    print('got', flush=True)\n"
              "    time.sleep(3)\nexcept UserError:\n    print('refused', flush=True)\n")
    start_at = str(time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(root), start_at], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outcomes == ["got", "refused", "refused"]


def test_status_file_is_json_with_the_kind(tmp_path):
    run_dir = runs.open_run(str(tmp_path), "x", kind="validate", resume=False)
    runs.close_runs("interrupted")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["kind"] == "validate" and record["status"] == "interrupted"

"""lit_rcqa/process.py: the one atomic write (and the temp names later runs clean up), the launcher check."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from lit_rcqa import process
from lit_rcqa.errors import UserError


def test_an_atomic_write_replaces_whole_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "run.json"
    process.write_json_atomic(path, {"status": "running", "name": "été"})
    process.write_json_atomic(path, {"status": "complete"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"status": "complete"}
    process.write_text_atomic(tmp_path / "a.txt", "ü\n")
    assert (tmp_path / "a.txt").read_bytes() == "ü\n".encode("utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "run.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    path.write_text("old")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(process.os, "fsync", full_disk)
    with pytest.raises(OSError):
        process.write_text_atomic(path, "new")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_without_replace_an_existing_file_is_kept(tmp_path):
    path = tmp_path / "00000000-r00.json"
    path.write_bytes(b"theirs")
    with pytest.raises(UserError, match="Nothing was replaced"):
        process.write_bytes_atomic(path, b"ours", replace=False)
    assert path.read_bytes() == b"theirs" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_temp_names_say_who_wrote_them(tmp_path):
    temp = process.temp_path(tmp_path / "manifest.json")
    assert temp.parent == tmp_path and temp.name.startswith(".manifest.json" + process.TEMP_MARKER)
    assert process.temp_writer(temp.name) == (process.host(), os.getpid())
    assert process.temp_writer(".manifest.json.tmp-12") is None  # not one of ours
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert process.writer_is_gone(process.host(), gone.pid) and process.writer_is_gone(None, gone.pid)
    assert not process.writer_is_gone(process.host(), os.getpid())
    assert not process.writer_is_gone("another-host.example", gone.pid)  # cannot be told from here


def test_a_killed_manifest_write_is_cleaned_by_the_next_run(tmp_path):
    """The temp names the one atomic write gives manifest.json and analyze_config.yaml are recognised as ours
    by the --out checks and removed once their writer is gone (a live writer's stay)."""
    from lit_rcqa.attribution.run import check_out_dir, clean_leftovers

    gone = subprocess.Popen(["true"])
    gone.wait()

    def left_by(pid: int, name: str):
        temp = process.temp_path(tmp_path / name)
        return temp.with_name(temp.name.rsplit("-", 1)[0] + f"-{pid}")

    dead = [left_by(gone.pid, "manifest.json"), left_by(gone.pid, "analyze_config.yaml")]
    alive = left_by(os.getpid(), "manifest.json")
    for path in (*dead, alive):
        path.write_text('{"schema": 3, "mod')
    check_out_dir(tmp_path)  # only our own temp files: a folder of ours
    clean_leftovers(tmp_path)
    assert [p.exists() for p in dead] == [False, False] and alive.exists()


def test_the_launcher_is_the_process_no_ddp_rank_variable_names_a_child(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("NODE_RANK", raising=False)
    assert process.is_launcher()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not process.is_launcher()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "1")
    assert not process.is_launcher()

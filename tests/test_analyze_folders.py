"""`analyze.py --out`: results never look fresher than they are, a resume never loses a neighbour's results, and
a folder that is not ours is left alone. In-process runs of a tiny model (4 examples, m = 4: seconds each)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analyze import main
from lit_rcqa import process
from lit_rcqa.attribution import store
from lit_rcqa.paths import REPO_ROOT
from tests.test_analyze import FAST, one_error_line
from tests.tiny_run import make_tiny_run

N = 4


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes): proof that nothing was written or removed."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.mktemp("folders") / "runs" / "tiny", dev_size=N)


@pytest.fixture(scope="module")
def scored_at_4(tiny, tmp_path_factory) -> Path:
    """`--steps 4` (Gauss-Legendre) into a folder that already existed, empty: 2 shards of 2 examples."""
    out = tmp_path_factory.mktemp("scored_at_4")
    assert main(ig(tiny, out, "--steps", "4")) == 0
    return out


def ig(run: Path, out: Path, *args: str) -> list[str]:
    return ["--run", str(run), "--out", str(out), "--num-examples", str(N), "--batch-size", "2", *FAST, *args]


# --- item 5: settings travel with the shards -------------------------------------------------------------
def test_shards_that_outlived_their_manifest_are_checked_against_the_new_settings(tiny, scored_at_4, tmp_path,
                                                                                   capsys):
    out = tmp_path / "D"
    shutil.copytree(scored_at_4, out)
    (out / store.MANIFEST).unlink()
    before = snapshot(out)
    line = one_error_line(capsys, main(ig(tiny, out, "--steps", "8", "--method", "riemann_left")))
    assert str(out / store.SCORES_DIR) in line and "(ig.method, ig.steps)" in line, line
    assert f"delete {out} to start over" in line
    assert snapshot(out) == before  # no manifest claiming m = 8 for shards computed at m = 4
    # The same settings as the shards' adopt them: a new manifest, nothing computed, the shards as they were.
    assert main(ig(tiny, out, "--steps", "4")) == 0
    assert "(0 computed now" in capsys.readouterr().out
    manifest = json.loads((out / store.MANIFEST).read_text())
    assert (manifest["ig"]["steps"], manifest["ig"]["method"]) == (4, "gausslegendre")
    assert {k: v for k, v in snapshot(out).items() if k.startswith("scores/")} == \
        {k: v for k, v in before.items() if k.startswith("scores/")}


def test_a_manifest_that_does_not_describe_the_shards_is_refused_by_the_loader_and_the_resume(tiny, scored_at_4,
                                                                                              tmp_path, capsys):
    at_8 = tmp_path / "at_8"
    assert main(ig(tiny, at_8, "--steps", "8")) == 0
    out = tmp_path / "D"
    shutil.copytree(scored_at_4, out)
    shutil.copy(at_8 / store.MANIFEST, out / store.MANIFEST)  # now claims m = 8
    before = snapshot(out)
    line = one_error_line(capsys, main(["--run", str(tiny), "--out", str(out), "--skip-ig", *FAST]))
    assert str(out / store.SCORES_DIR) in line and "(ig.steps)" in line, line
    line = one_error_line(capsys, main(ig(tiny, out, "--steps", "8")))
    assert str(out / store.SCORES_DIR) in line and "(ig.steps)" in line, line
    assert snapshot(out) == before


# --- item 6: sidecars are checksummed; a resume never replaces a shard ------------------------------------
def test_an_edited_sidecar_is_refused_before_anything_is_rewritten(tiny, scored_at_4, tmp_path, capsys):
    out = tmp_path / "D"
    shutil.copytree(scored_at_4, out)
    sidecar = out / store.SCORES_DIR / "00000000-r00.json"
    meta = json.loads(sidecar.read_text())
    assert len(meta["examples"]) == 2
    meta["examples"][0]["id"] = "edited-by-hand"
    sidecar.write_text(json.dumps(meta))
    before = snapshot(out)
    line = one_error_line(capsys, main(ig(tiny, out, "--steps", "4")))
    assert "corrupt IG shard" in line and sidecar.name in line and "delete 00000000-r00.*" in line, line
    assert snapshot(out) == before  # the other example of that shard is still on disk
    # Following the line's advice recomputes exactly that shard's two examples.
    for path in sidecar.parent.glob("00000000-r00.*"):
        path.unlink()
    assert main(ig(tiny, out, "--steps", "4")) == 0
    assert "(2 computed now" in capsys.readouterr().out
    assert len(store.load(out)) == N


# --- item 7: a folder that is not ours is left alone; only our temp files are cleaned ----------------------
def test_a_non_empty_folder_without_a_manifest_is_refused_and_left_alone(tiny, tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "figures").mkdir(parents=True)
    (out / "report.html").write_text("<p>my own report</p>")
    (out / "figures" / "plot.png").write_bytes(b"\x89PNG my plot")
    before = snapshot(out)
    for extra in ([], ["--analyses", "html"]):
        line = one_error_line(capsys, main(ig(tiny, out, "--steps", "4", *extra)))
        assert str(out) in line and "not an analysis folder" in line, line
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["figures", "report.html"]
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    line = one_error_line(capsys, main(ig(tiny, a_file, "--steps", "4")))
    assert str(a_file) in line and a_file.read_text() == "mine"


def with_pid(temp: Path, pid: int, host: str | None = "") -> Path:
    """`temp` (a name from process.temp_path) written by process `pid` (on `host`; None: the older pid-only name)."""
    stem, _, host_pid = temp.name.rpartition(process.TEMP_MARKER)
    our_host = host_pid.rsplit("-", 1)[0]
    suffix = str(pid) if host is None else f"{host or our_host}-{pid}"
    return temp.with_name(f"{stem}{process.TEMP_MARKER}{suffix}")


@pytest.fixture
def live_pid():
    proc = subprocess.Popen(["sleep", "120"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def gone_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_only_temp_files_of_ours_whose_writer_is_gone_are_cleaned(tiny, scored_at_4, tmp_path, live_pid, gone_pid):
    out = tmp_path / "D"
    shutil.copytree(scored_at_4, out)
    scores = out / store.SCORES_DIR
    ours = process.temp_path(scores / "00000002-r00.safetensors")  # as left by a writer killed mid-file
    dead = [with_pid(ours, gone_pid), with_pid(ours, gone_pid, host=None),
            out / f".{store.MANIFEST}.tmp-{gone_pid}", out / f".analyze_config.yaml.tmp-{gone_pid}"]
    alive = [with_pid(ours, live_pid), with_pid(ours, gone_pid, host="another-host.example"),
             out / f".{store.MANIFEST}.tmp-{live_pid}"]
    users = [scores / ".notes.tmp-1", scores / ".00000000-r00.json.tmp-7", out / ".report.html.tmp-12",
             out / "figures.tmp-3"]
    for path in dead + alive:
        path.write_bytes(b"partial")
    for path in users:
        path.write_text("the user's")
    assert main(ig(tiny, out, "--steps", "4")) == 0
    assert [p for p in dead if p.exists()] == []
    assert all(p.read_bytes() == b"partial" for p in alive)  # a live writer's, or another host's: kept
    assert all(p.read_text() == "the user's" for p in users)


def test_a_folder_left_by_a_kill_inside_the_manifest_write_is_ours(tiny, tmp_path, capsys, gone_pid):
    """Killed while writing manifest.json: only its temp file is there. That folder is ours: the run goes on,
    and the leftover goes."""
    out = tmp_path / "D"
    (out / store.SCORES_DIR).mkdir(parents=True)
    left = out / f".{store.MANIFEST}.tmp-{gone_pid}"
    left.write_text('{"schema": 2, "mod')
    assert main(ig(tiny, out, "--steps", "4")) == 0
    assert not left.exists() and len(store.load(out)) == N


def test_tensor_files_of_a_killed_writer_are_removed_by_the_next_run(tiny, scored_at_4, tmp_path, capsys):
    out = tmp_path / "D"
    shutil.copytree(scored_at_4, out)
    scores = out / store.SCORES_DIR
    for path in scores.glob("00000002-r00.*"):
        if path.suffix == ".json":
            path.unlink()  # killed between its tensor files and its sidecar
    orphans = sorted(scores.glob("00000002-r00*"))
    assert orphans
    assert main(ig(tiny, out, "--steps", "4")) == 0
    assert "(2 computed now" in capsys.readouterr().out
    assert sorted(p.name for p in scores.iterdir()) == sorted(p.name for p in (scored_at_4 / "scores").iterdir())


# --- one live analyze.py per --out -------------------------------------------------------------------------
HOLD = ("import sys; from pathlib import Path; from lit_rcqa.attribution.run import out_dir_lock\n"
        "with out_dir_lock(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()\n")


@pytest.fixture
def holder():
    """Start a process that holds the --out lock as a running analyze.py does, until the test ends."""
    procs = []

    def start(out: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        procs.append(proc)
        assert proc.stdout.readline() == "held\n"
        return proc

    yield start
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_a_second_analyze_on_the_same_out_is_one_line_and_writes_nothing(tiny, scored_at_4, tmp_path, capsys,
                                                                         holder):
    new, scored = tmp_path / "new", tmp_path / "D"
    shutil.copytree(scored_at_4, scored)
    (scored / "scores" / "00000002-r00.json").unlink()  # something left to compute
    first = {out: holder(out) for out in (new, scored)}
    for out, args in ((new, ig(tiny, new, "--steps", "4")), (scored, ig(tiny, scored, "--steps", "4")),
                      (scored, ["--run", str(tiny), "--out", str(scored), "--skip-ig", "--logger", "none",
                                "--no-progress", "--analyses", "html"])):
        before = snapshot(out)
        line = one_error_line(capsys, main(args))
        assert str(out) in line and "in use by another analyze.py" in line and f"process {first[out].pid}" in line, line
        assert snapshot(out) == before
    # Once the first one has ended, the same command runs.
    first[scored].stdin.close()
    first[scored].wait(timeout=60)
    assert main(ig(tiny, scored, "--steps", "4")) == 0
    assert len(store.load(scored)) == N


def test_ddp_ranks_of_the_launch_holding_the_lock_are_not_refused(tmp_path, holder, monkeypatch):
    from lit_rcqa.attribution.run import out_dir_lock
    from lit_rcqa.errors import UserError

    out = tmp_path / "D"
    holder(out)
    with pytest.raises(UserError, match="in use by another analyze.py"):
        with out_dir_lock(out):
            pass
    monkeypatch.setenv("LOCAL_RANK", "1")  # a process Lightning started for rank 1 of the holder's launch
    with out_dir_lock(out):
        pass


# --- folders written before shards carried their settings (schema 1) --------------------------------------
def make_legacy(out: Path) -> None:
    """Rewrite a folder as the previous version wrote it: schema 1 manifest and sidecars, no settings or checksum."""
    manifest = json.loads((out / store.MANIFEST).read_text())
    (out / store.MANIFEST).write_text(json.dumps({**manifest, "schema": 1}))
    for sidecar in (out / store.SCORES_DIR).glob("*.json"):
        meta = json.loads(sidecar.read_text())
        del meta["settings"], meta["sha256"]
        sidecar.write_text(json.dumps({**meta, "schema": 1}))


def test_a_schema_1_folder_resumes_under_its_own_manifest_only(tiny, scored_at_4, tmp_path, capsys):
    out = tmp_path / "old"
    shutil.copytree(scored_at_4, out)
    make_legacy(out)
    for path in (out / store.SCORES_DIR).glob("00000002-r00.*"):
        path.unlink()  # an interrupted run of the previous version
    assert main(ig(tiny, out, "--steps", "4")) == 0
    assert "(2 computed now" in capsys.readouterr().out
    assert list(store.load(out)) == list(store.load(scored_at_4))
    # Without the manifest written with them, nothing says what the old shards were computed with.
    (out / store.MANIFEST).unlink()
    line = one_error_line(capsys, main(ig(tiny, out, "--steps", "4")))
    assert "00000000-r00.json was written by an older version" in line and f"delete {out} and re-run" in line, line
    # Following the line's advice starts over.
    shutil.rmtree(out)
    assert main(ig(tiny, out, "--steps", "4")) == 0
    assert list(store.load(out)) == list(store.load(scored_at_4))

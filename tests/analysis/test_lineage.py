"""Each analyze.py invocation is its own tracker run, unless it re-runs an unfinished one with the same settings."""

from __future__ import annotations

from itertools import count

from lit_rcqa.analysis.lineage import analysis_run_id, mark_finished, model_lineage, resume_key


def ids():
    numbers = count()
    return lambda: f"id{next(numbers)}"


def test_a_new_run_unless_resuming_the_same_unfinished_command(tmp_path):
    new_id = ids()
    settings = {"steps": 8, "layers": "all", "run": "runs/a"}
    assert analysis_run_id(tmp_path, settings, new_id) == ("id0", False)
    assert analysis_run_id(tmp_path, dict(settings), new_id) == ("id0", True)          # interrupted: resume it
    assert analysis_run_id(tmp_path, {**settings, "steps": 16}, new_id) == ("id1", False)  # other settings
    mark_finished(tmp_path)
    assert analysis_run_id(tmp_path, {**settings, "steps": 16}, new_id) == ("id2", False)  # finished: a new run


def test_model_lineage_keeps_the_training_digest_when_the_files_changed():
    ref = {"name": "model-a", "type": "model", "digest": "new"}
    assert model_lineage(ref, {"model_artifact": {"digest": "new"}}) == ref
    assert model_lineage(ref, {"model_artifact": {"digest": "old"}}) == {**ref, "digest_at_training": "old"}
    assert model_lineage(ref, {}) == ref


def test_toggling_the_progress_bar_resumes_the_same_tracker_run_other_settings_do_not(tmp_path):
    from lit_rcqa import analyze_config

    base = analyze_config.as_tree(analyze_config.parse(["--run", "runs/x", "--num-examples", "5"]))
    quiet = analyze_config.as_tree(analyze_config.parse(["--run", "runs/x", "--num-examples", "5", "--no-progress"]))
    other = analyze_config.as_tree(analyze_config.parse(["--run", "runs/x", "--num-examples", "5",
                                                          "--ig.tolerance", "0.005"]))
    assert base["loop"]["progress"] != quiet["loop"]["progress"]  # the flag really reached the config
    new_id = ids()
    first, _ = analysis_run_id(tmp_path, resume_key(base), new_id)
    assert analysis_run_id(tmp_path, resume_key(quiet), new_id) == (first, True)
    assert analysis_run_id(tmp_path, resume_key(other), new_id)[0] != first

"""The manifest records the adaptive panels' settings, so a folder is resumed only with the rule its records were
made with; a setting an older manifest lacks is read as what it was then (split at every node with fraction ½ before
2026-12-01; Lobatto-5 panels, two to start with, Σ|e_p| before 2026-12-02)."""

from __future__ import annotations

import json

import pytest

from lit_rcqa.attribution.integrated_gradients import IGSettings
from lit_rcqa.attribution.run import _panel_settings, check_manifest
from lit_rcqa.errors import UserError


def manifest(settings: IGSettings) -> dict:
    return {"schema": 3, "ig": {"tolerance": settings.tolerance, "refine_method": settings.refine_method,
                                "steps": settings.steps, **_panel_settings(settings)}}


def test_a_folder_from_before_the_split_was_recorded_resumes_only_with_the_rule_it_was_made_with(tmp_path):
    old = manifest(IGSettings(tolerance=0.01))
    for key in ("split", "refine_fraction", "panel_points", "breakpoints", "criterion"):
        del old["ig"][key]
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(UserError, match=r"different settings \(ig\.breakpoints, ig\.panel_points, "
                                        r"ig\.refine_fraction, ig\.split\)"):
        check_manifest(tmp_path, manifest(IGSettings(tolerance=0.01)))  # today's default: lazy, 0.9, Simpson, 4
    then = IGSettings(tolerance=0.01, split="nodes", refine_fraction=0.5, panel_points=5, breakpoints=(0.0, 0.5, 1.0))
    assert check_manifest(tmp_path, manifest(then))


def test_a_folder_made_with_lazy_lobatto_5_panels_resumes_only_with_them(tmp_path):
    old = manifest(IGSettings(tolerance=0.01))
    for key in ("panel_points", "breakpoints", "criterion"):  # recorded from 2026-12-02
        del old["ig"][key]
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(UserError, match=r"different settings \(ig\.breakpoints, ig\.panel_points\)"):
        check_manifest(tmp_path, manifest(IGSettings(tolerance=0.01)))
    assert check_manifest(tmp_path, manifest(IGSettings(tolerance=0.01, panel_points=5, breakpoints=(0.0, 0.5, 1.0))))


def test_a_folder_made_with_lazy_splits_is_not_resumed_with_another_fraction(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest(IGSettings(tolerance=0.01))))
    assert check_manifest(tmp_path, manifest(IGSettings(tolerance=0.01)))
    with pytest.raises(UserError, match=r"different settings \(ig\.refine_fraction\)"):
        check_manifest(tmp_path, manifest(IGSettings(tolerance=0.01, refine_fraction=0.5)))


def test_fixed_rules_record_no_panel_settings(tmp_path):
    assert _panel_settings(IGSettings(steps=50)) == {}
    assert _panel_settings(IGSettings(tolerance=0.01, refine_method="romberg")) == {}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest(IGSettings(steps=50))))
    assert check_manifest(tmp_path, manifest(IGSettings(steps=50, split="nodes")))


def test_bad_panel_settings_are_user_errors():
    with pytest.raises(UserError, match="split"):
        IGSettings(tolerance=0.01, split="thirds")
    with pytest.raises(UserError, match="fraction"):
        IGSettings(tolerance=0.01, refine_fraction=1.5)
    with pytest.raises(UserError, match="at least 3 points"):
        IGSettings(tolerance=0.01, panel_points=2)
    with pytest.raises(UserError, match="breakpoints"):
        IGSettings(tolerance=0.01, breakpoints=(0.0, 0.6, 0.5, 1.0))

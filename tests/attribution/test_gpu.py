"""The IG path on a CUDA device equals the CPU path (skipped where no GPU is present, as in CI).

Run on a GPU machine with `python -m pytest -q tests/attribution/test_gpu.py`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.references import captum_layer_ig
from lit_rcqa.attribution import store
from lit_rcqa.attribution.integrated_gradients import IGSettings, integrated_gradients
from lit_rcqa.attribution.layers import EncoderAdapter
from callbacks import ig_callbacks
from lit_rcqa.attribution.run import IGOptions, open_run, run_ig
from tests.attribution.test_integrated_gradients import relative_diff, tiny_example, with_random_biases
from tests.conftest import make_tiny_qa_model
from tests.tiny_run import make_tiny_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

FAMILIES = ["bert", "roberta", "distilbert", "electra"]


@pytest.fixture(autouse=True)
def exact_float32_matmuls():
    """TF32 would make the GPU side differ by ~1e-3; the comparison is of the algorithm, in full float32."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("family", FAMILIES)
def test_every_layer_on_the_gpu_equals_the_cpu(family):
    model = with_random_biases(make_tiny_qa_model(family, layers=2, hidden=32))
    ids, types = tiny_example(T=40, question=8)
    types = None if family in ("distilbert", "roberta") else types
    passage = (9, 39)
    settings = IGSettings(steps=16, max_batch_tokens=5 * 40)  # several chunks per layer
    cpu = integrated_gradients(model, ids, token_type_ids=types, passage=passage, settings=settings)
    model_gpu = model.to("cuda")
    gpu = integrated_gradients(model_gpu, ids.cuda(), token_type_ids=None if types is None else types.cuda(),
                               passage=passage, settings=settings)
    model.to("cpu")
    assert (gpu.pred_start, gpu.pred_end) == (cpu.pred_start, cpu.pred_end)
    assert relative_diff(gpu.importance, cpu.importance) <= 1e-4
    assert relative_diff(gpu.signed, cpu.signed) <= 1e-4
    np.testing.assert_allclose(gpu.delta, cpu.delta, atol=1e-4)


def test_tolerance_mode_on_the_gpu_equals_the_cpu():
    model = with_random_biases(make_tiny_qa_model("bert", layers=3, hidden=32))
    ids, types = tiny_example(T=30, question=6)
    settings = IGSettings(tolerance=1e-3, max_steps=160)
    cpu = integrated_gradients(model, ids, token_type_ids=types, settings=settings)
    gpu = integrated_gradients(model.to("cuda"), ids.cuda(), token_type_ids=types.cuda(), settings=settings)
    model.to("cpu")
    np.testing.assert_array_equal(gpu.steps, cpu.steps)
    assert relative_diff(gpu.importance, cpu.importance) <= 1e-4


def test_captum_on_the_gpu_agrees_with_ours_on_the_gpu():
    model = with_random_biases(make_tiny_qa_model("bert", layers=2, hidden=32)).to("cuda")
    ids, types = (t.cuda() for t in tiny_example(T=24, question=6))
    result = integrated_gradients(model, ids, token_type_ids=types, settings=IGSettings(steps=20))
    adapter = EncoderAdapter(model)
    for row, layer in enumerate(result.layers):
        reference = captum_layer_ig(model, adapter.layer_module(layer), ids, types,
                                    (result.pred_start, result.pred_end), steps=20)
        assert relative_diff(result.importance[row], reference.norm(dim=-1).cpu().numpy()) <= 1e-4


def test_the_prediction_loop_on_a_gpu_writes_the_same_scores_as_on_the_cpu(tmp_path):
    run = open_run(make_tiny_run(tmp_path / "tiny"))
    settings = IGSettings(steps=12)
    for accelerator in ("cpu", "gpu"):
        run_ig(run, tmp_path / accelerator, settings,
               IGOptions(num_examples=6, hidden_examples=2, batch_size=4, accelerator=accelerator, progress=False),
               callbacks=ig_callbacks)
    cpu, gpu = store.load(tmp_path / "cpu"), store.load(tmp_path / "gpu")
    assert sorted(cpu) == sorted(gpu) and len(cpu) == 6
    for example_id, record in cpu.items():
        other = gpu[example_id]
        assert (other.pred_start, other.pred_end) == (record.pred_start, record.pred_end)
        assert relative_diff(other.importance, record.importance) <= 1e-4
    hidden_cpu, hidden_gpu = store.load_hidden(tmp_path / "cpu"), store.load_hidden(tmp_path / "gpu")
    assert sorted(hidden_cpu) == sorted(hidden_gpu) and len(hidden_cpu) == 2

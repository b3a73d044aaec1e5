"""QAModule: its loss (checked by hand), the padding mask, the optimizer and its warm-up/decay schedule
(against the formula, step by step), and val/f1_best over epochs and across a checkpoint."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from lit_rcqa.model import QAModule
from tests.conftest import make_tiny_qa_model


def test_optimizer_is_fused_adamw_with_no_decay_on_biases_and_layernorm_and_steps_like_torch(monkeypatch):
    monkeypatch.setattr("lit_rcqa.model.load_qa_model", lambda name: make_tiny_qa_model("bert", layers=1, hidden=16))
    module = QAModule(model_name_or_path="tiny", learning_rate=1e-3, weight_decay=0.1, warmup_ratio=0.0)
    module._trainer = SimpleNamespace(estimated_stepping_batches=10)
    config = module.configure_optimizers()
    optimizer = config["optimizer"]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"]
    decay, no_decay = optimizer.param_groups
    names = {id(p): n for n, p in module.model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(not n.endswith("bias") and "LayerNorm" not in n for n in (names[id(p)] for p in decay["params"]))
    assert {names[id(p)] for p in no_decay["params"]} == {n for n, p in module.model.named_parameters()
                                                        if p.ndim < 2 or "LayerNorm" in n}
    # one step equals torch's plain (per-parameter loop) AdamW on a copy with the same groups
    reference = make_tiny_qa_model("bert", layers=1, hidden=16)
    reference.load_state_dict(module.model.state_dict())
    ref_params = dict(reference.named_parameters())
    groups = [{"params": [ref_params[names[id(p)]] for p in g["params"]], "weight_decay": g["weight_decay"]}
              for g in (decay, no_decay)]
    plain = torch.optim.AdamW(groups, lr=1e-3, eps=1e-8, foreach=False)
    torch.manual_seed(0)
    for name, p in module.model.named_parameters():
        p.grad = torch.randn_like(p)
        ref_params[name].grad = p.grad.clone()
    config["lr_scheduler"]["scheduler"].optimizer.step()
    plain.step()
    for name, p in module.model.named_parameters():
        torch.testing.assert_close(p, ref_params[name], rtol=1e-5, atol=1e-6)


def tiny_module(monkeypatch, **kwargs) -> QAModule:
    monkeypatch.setattr("lit_rcqa.model.load_qa_model", lambda name: make_tiny_qa_model("bert", layers=1, hidden=16))
    return QAModule(model_name_or_path="tiny", **kwargs)


def padded_batch() -> dict[str, torch.Tensor]:
    """Two sequences; the second has 3 padding positions. Answers at (2, 4) and (1, 5)."""
    g = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(1000, 2000, (2, 10), generator=g),
            "attention_mask": torch.tensor([[1] * 10, [1] * 7 + [0] * 3]),
            "token_type_ids": torch.zeros(2, 10, dtype=torch.long),
            "start_positions": torch.tensor([2, 1]), "end_positions": torch.tensor([4, 5])}


def test_loss_is_the_mean_of_start_and_end_cross_entropy_over_unpadded_positions(monkeypatch):
    module = tiny_module(monkeypatch).eval()
    batch = padded_batch()
    with torch.no_grad():
        loss, _, _ = module._shared_step(batch)
        out = module.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"])

    def nll(logits: list[float], length: int, gold: int) -> float:
        """-log softmax(logits[:length])[gold], by hand in double precision."""
        return math.log(sum(math.exp(x) for x in logits[:length])) - logits[gold]

    lengths = [10, 7]
    start = [nll(out.start_logits[i].tolist(), lengths[i], int(batch["start_positions"][i])) for i in range(2)]
    end = [nll(out.end_logits[i].tolist(), lengths[i], int(batch["end_positions"][i])) for i in range(2)]
    expected = (sum(start) / 2 + sum(end) / 2) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_padding_is_never_chosen_and_does_not_change_the_loss(monkeypatch):
    module = tiny_module(monkeypatch).eval()
    batch = padded_batch()
    with torch.no_grad():
        loss, start, end = module._shared_step(batch)
    assert (start[1, 7:] == torch.finfo(start.dtype).min).all() and (end[1, 7:] == torch.finfo(end.dtype).min).all()
    assert start[1].argmax() < 7 and end[1].argmax() < 7
    # The same two questions with 6 more padding positions each: same loss, same logits where it counts.
    wider = {k: v for k, v in batch.items()}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        wider[key] = torch.cat([batch[key], torch.zeros(2, 6, dtype=torch.long)], dim=1)
    with torch.no_grad():
        wider_loss, wider_start, _ = module._shared_step(wider)
    assert float(wider_loss) == pytest.approx(float(loss), abs=1e-5)
    torch.testing.assert_close(wider_start[0, :10], start[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(wider_start[1, :7], start[1, :7], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("total, warmup_ratio", [(20, 0.1), (10, 0.25), (7, 0.0)])
def test_learning_rate_warms_up_linearly_then_decays_linearly_to_zero(monkeypatch, total, warmup_ratio):
    peak = 1e-3
    module = tiny_module(monkeypatch, learning_rate=peak, warmup_ratio=warmup_ratio)
    module._trainer = SimpleNamespace(estimated_stepping_batches=total)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    warmup = int(warmup_ratio * total)  # BERT: warm-up steps = floor(ratio * total steps)

    def expected(step: int) -> float:
        if step < warmup:
            return peak * step / warmup
        return peak * max(0.0, (total - step) / (total - warmup))

    seen = []
    for step in range(total + 1):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    for step, lrs in enumerate(seen):
        assert lrs == pytest.approx([expected(step)] * 2, abs=1e-15), step
    assert max(lr for lrs in seen for lr in lrs) == pytest.approx(peak)


def run_validation_epoch(module: QAModule, predictions: dict[str, str], logged: dict[str, list[float]]) -> None:
    """One `on_validation_epoch_end` with these predictions (post-processing stubbed out)."""
    golds = {"a": ["red fox"], "b": ["blue"]}
    split = SimpleNamespace(gold_texts=golds)
    module._trainer = SimpleNamespace(datamodule=SimpleNamespace(eval_split=lambda: split))
    module._postprocess = lambda split, outputs: (predictions, {})
    module.log = lambda name, value, **kw: logged.setdefault(name, []).append(float(value))
    module.on_validation_epoch_end()


def test_val_f1_best_is_the_maximum_over_epochs_and_survives_a_checkpoint(monkeypatch):
    module = tiny_module(monkeypatch)
    logged: dict[str, list[float]] = {}
    # F1 per epoch: a = 2PR/(P+R) with P=1, R=1/2 -> 2/3, b = 0 -> 33.33; then 100; then 0.
    for predictions in ({"a": "red", "b": "green"}, {"a": "red fox", "b": "blue"}, {"a": "x", "b": "y"}):
        run_validation_epoch(module, predictions, logged)
    assert logged["val/f1"] == pytest.approx([100 / 3, 100.0, 0.0])
    assert logged["val/f1_best"] == pytest.approx([100 / 3, 100.0, 100.0])
    # A resumed run continues from the saved best, not from nothing.
    checkpoint = {"state_dict": module.state_dict()}
    resumed = tiny_module(monkeypatch)
    resumed.on_load_checkpoint(checkpoint)
    resumed.load_state_dict(checkpoint["state_dict"])
    again: dict[str, list[float]] = {}
    run_validation_epoch(resumed, {"a": "red", "b": "green"}, again)
    assert again["val/f1_best"] == pytest.approx([100.0])
    # A checkpoint from before the best was saved still loads (strictly), with no best yet.
    old = {"state_dict": {k: v for k, v in module.state_dict().items() if not k.startswith("val_f1_best.")}}
    fresh = tiny_module(monkeypatch)
    fresh.on_load_checkpoint(old)
    fresh.load_state_dict(old["state_dict"])


def _left_padded_features_batch():
    """Two windows as `build_features` makes them for a left-padding tokenizer with pad_to_max_length: the first
    carries 4 padding positions at its front; the second, 7 long, is right-padded to 10 by the collate."""
    from lit_rcqa.data.features import collate_features

    g = torch.Generator().manual_seed(2)
    first = torch.randint(1000, 2000, (10,), generator=g).tolist()
    second = torch.randint(1000, 2000, (7,), generator=g).tolist()
    items = [{"input_ids": [0] * 4 + first[4:], "attention_mask": [0] * 4 + [1] * 6, "token_type_ids": [0] * 10,
              "start_positions": 5, "end_positions": 6, "feature_index": 0},
             {"input_ids": second, "attention_mask": [1] * 7, "token_type_ids": [0] * 7,
              "start_positions": 1, "end_positions": 2, "feature_index": 1}]
    return items, collate_features(items, pad_token_id=0)


def test_validation_keeps_each_windows_logits_at_its_own_positions_left_padding_included(monkeypatch):
    """Post-processing reads a window's logits by token position (its offsets): validation must keep position k
    of the window at index k, whichever side the window was padded on."""
    module = tiny_module(monkeypatch).eval()
    items, batch = _left_padded_features_batch()
    with torch.no_grad():
        module.validation_step(batch, 0)
        for item, (index, start, end) in zip(items, sorted(module._val_outputs, key=lambda o: o[0])):
            ids = torch.tensor([item["input_ids"]])
            out = module.model(input_ids=ids, attention_mask=torch.tensor([item["attention_mask"]]),
                               token_type_ids=torch.zeros_like(ids))
            real = torch.tensor(item["attention_mask"]) == 1
            assert start.shape == end.shape == (len(item["input_ids"]),), index
            torch.testing.assert_close(start[real], out.start_logits[0, real], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(end[real], out.end_logits[0, real], rtol=1e-5, atol=1e-5)
            assert (start[~real] == torch.finfo(start.dtype).min).all()  # padding is never chosen


def test_predict_scores_each_window_at_its_own_positions_left_padding_included(monkeypatch):
    from lit_rcqa.predict import PredictSettings, score_windows

    model = make_tiny_qa_model("bert", layers=1, hidden=16)
    items, _ = _left_padded_features_batch()
    features = SimpleNamespace(**{k: [item[k] for item in items] for k in ("input_ids", "attention_mask",
                                                                              "token_type_ids", "start_positions",
                                                                              "end_positions")})
    starts, ends = score_windows(model, features, 0, PredictSettings(batch_size=2))
    for item, start, end in zip(items, starts, ends):
        ids = torch.tensor([item["input_ids"]])
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=torch.tensor([item["attention_mask"]]),
                        token_type_ids=torch.zeros_like(ids))
        real = torch.tensor(item["attention_mask"]) == 1
        assert start.shape == end.shape == (len(item["input_ids"]),)
        torch.testing.assert_close(torch.from_numpy(start)[real], out.start_logits[0, real], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(end)[real], out.end_logits[0, real], rtol=1e-5, atol=1e-5)

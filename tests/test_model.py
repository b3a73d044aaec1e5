"""QAModule's optimizer: AdamW with BERT's decoupled weight decay groups, the fused kernel where available."""

from __future__ import annotations

from types import SimpleNamespace

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

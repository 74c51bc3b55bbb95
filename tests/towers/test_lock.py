"""Lock settings: what is locked gets no gradients, stays in eval mode and stays bit-identical."""
from __future__ import annotations

import pytest
import torch
from timm.models import group_parameters

from littune.losses import create_loss
from littune.model import LiTModel
from littune.towers import LOCK_MODES, create_image_tower, create_text_tower, fingerprint, parse_setting, wrap_tokenizer

from .tiny import tiny_wordpiece


def _r18(lock: str = "L", locked_blocks: int = 0):
    """timm's tiny test ResNet (0.5 M parameters, batch-norm, the resnet18 layout of groups)."""
    torch.manual_seed(0)
    return create_image_tower("timm:test_resnet", pretrained=False, lock=lock, locked_blocks=locked_blocks)


def _bn_stats(tower) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in tower.state_dict().items() if "running_" in k}


def test_lock_modes_and_parse_setting():
    assert set(LOCK_MODES) == {"L", "U", "u"}
    assert parse_setting("LU") == ("L", "U")
    assert parse_setting("Lu") == ("L", "u")
    assert parse_setting("uU") == ("u", "U")
    for bad in ("L", "LUU", "", "LX", "xU", "ll"):
        with pytest.raises(ValueError):
            parse_setting(bad)


def test_locked_tower_has_no_grads_stays_eval_and_builds_no_graph():
    tower = _r18("L")
    assert tower.locked and tower.lock_summary()["trainable_params"] == 0
    assert not any(p.requires_grad for p in tower.parameters())
    tower.train()
    assert not tower.training and not any(m.training for m in tower.modules())
    out = tower(torch.randn(2, 3, 32, 32, requires_grad=True))  # even a grad-requiring input
    assert not out.requires_grad and out.grad_fn is None


def test_locked_bn_tower_keeps_running_stats_in_train_mode():
    locked, unlocked = _r18("L"), _r18("U")
    before_l, before_u = _bn_stats(locked), _bn_stats(unlocked)
    fp = locked.fingerprint()
    x = torch.randn(4, 3, 32, 32) * 3 + 1
    locked.train()
    unlocked.train()
    locked(x)
    unlocked(x)
    assert all(torch.equal(before_l[k], v) for k, v in _bn_stats(locked).items())
    assert locked.fingerprint() == fp
    # The same forward moves an unlocked tower's statistics (so the check above can fail).
    assert not torch.equal(before_u["model.bn1.running_mean"], _bn_stats(unlocked)["model.bn1.running_mean"])


def test_partial_lock_freezes_exactly_the_lowest_groups_resnet():
    tower = _r18("U", locked_blocks=2)  # groups: stem (conv1, bn1), layer1, layer2, layer3, layer4
    assert len(tower.layer_groups()) == 5
    frozen_prefixes = ("conv1.", "bn1.", "layer1.")
    for name, p in tower.model.named_parameters():
        assert p.requires_grad == (not name.startswith(frozen_prefixes)), name
    tower.train()
    assert tower.training
    modes = dict(tower.model.named_modules())
    assert not modes["bn1"].training and not modes["layer1.0.bn1"].training and not modes["layer1.0"].training
    assert modes["layer2.0.bn1"].training and modes["layer4.0.bn2"].training

    before = _bn_stats(tower.model)
    out = tower(torch.randn(4, 3, 32, 32) * 2)
    out.pow(2).mean().backward()
    after = _bn_stats(tower.model)
    for k in before:
        assert torch.equal(before[k], after[k]) == k.startswith(frozen_prefixes), k
    for name, p in tower.model.named_parameters():
        if name.startswith(frozen_prefixes):
            assert p.grad is None, name
        elif name.startswith(("layer2.", "layer3.", "layer4.")):
            assert p.grad is not None, name  # (timm zero-inits each block's last BN: some grads are 0)
    for layer in ("layer2", "layer3", "layer4"):
        assert sum(float(p.grad.abs().sum()) for p in getattr(tower.model, layer).parameters()) > 0, layer


def test_partial_lock_vit_includes_model_level_parameters():
    """cls_token / pos_embed sit on the model itself; locking the stem must freeze them too."""
    tower = create_image_tower("timm:vit_tiny_patch16_224", pretrained=False, lock="U", locked_blocks=2, img_size=32)
    groups = group_parameters(tower.model, tower.model.group_matcher(coarse=True))
    ordered = [groups[k] for k in sorted(groups)]
    frozen = set(ordered[0]) | set(ordered[1])
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight"} <= frozen
    for name, p in tower.model.named_parameters():
        assert p.requires_grad == (name not in frozen), name
    out = tower(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert tower.model.pos_embed.grad is None and tower.model.blocks[1].attn.qkv.weight.grad is not None


def test_locked_blocks_run_without_drop_path_in_train_mode():
    """Whole blocks go to eval, so stochastic depth (a module without parameters) is off in them."""
    torch.manual_seed(0)
    tower = create_image_tower("timm:vit_tiny_patch16_224", pretrained=False, lock="U", img_size=32,
                               drop_path_rate=0.5, proj_drop_rate=0.3)
    n = len(tower.layer_groups())
    tower.set_lock("U", locked_blocks=n)  # every group locked, only the head-side rest trains
    tower.train()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(tower(x), tower(x))
    tower.set_lock("U")
    tower.train()
    assert not torch.allclose(tower(x), tower(x))  # unlocked: drop-path and dropout are active


def test_partial_lock_hf_towers(hf_image_dirs):
    # transformers 5 keeps ViT's layers on the model itself; CLIP has a pre-layernorm in its stem.
    vit = create_image_tower(f"hf:{hf_image_dirs['vit']}", lock="U", locked_blocks=2)
    assert len(vit.layer_groups()) == 3  # embeddings + 2 layers
    for name, p in vit.model.named_parameters():
        assert p.requires_grad == (not name.startswith(("embeddings.", "layers.0."))), name
    clip = create_image_tower(f"hf:{hf_image_dirs['clip']}", lock="U", locked_blocks=1)
    for name, p in clip.model.named_parameters():
        assert p.requires_grad == (not name.startswith(("embeddings.", "pre_layrnorm."))), name
    resnet = create_image_tower(f"hf:{hf_image_dirs['resnet']}", lock="u", locked_blocks=1)
    resnet.train()
    assert not resnet.model.embedder.training and resnet.model.encoder.stages[0].training
    assert not any(p.requires_grad for p in resnet.model.embedder.parameters())


def test_partial_lock_text_towers(hf_text_dirs):
    tok = wrap_tokenizer(tiny_wordpiece(), 16)
    scratch = create_text_tower("scratch", tokenizer=tok, width=32, depth=3, heads=2, lock="u", locked_blocks=2)
    assert not scratch.token_emb.weight.requires_grad
    assert not any(p.requires_grad for p in scratch.blocks.layers[0].parameters())
    assert all(p.requires_grad for p in scratch.blocks.layers[1].parameters())
    bert = create_text_tower(f"hf:{hf_text_dirs['bert']}", lock="U", locked_blocks=1)
    assert not any(p.requires_grad for p in bert.model.embeddings.parameters())
    assert all(p.requires_grad for p in bert.model.encoder.parameters())


def test_invalid_lock_settings_raise():
    tower = _r18("U")
    with pytest.raises(ValueError, match="not a lock setting"):
        tower.set_lock("X")
    with pytest.raises(ValueError, match="not a lock setting"):
        create_image_tower("timm:test_resnet", pretrained=False, lock="l")
    with pytest.raises(ValueError, match="locked_blocks applies to an unlocked tower"):
        create_image_tower("timm:test_resnet", pretrained=False, lock="L", locked_blocks=2)
    with pytest.raises(ValueError, match="has 5 groups"):
        tower.set_lock("U", 6)
    with pytest.raises(ValueError, match=">= 0"):
        tower.set_lock("U", -1)


def test_relock_and_unlock():
    tower = _r18("U", locked_blocks=2)
    tower.set_lock("L")
    assert not any(p.requires_grad for p in tower.parameters()) and not tower.training
    tower.set_lock("U")
    tower.train()
    assert all(p.requires_grad for p in tower.parameters()) and all(m.training for m in tower.modules())


def test_fingerprint_sees_every_buffer_and_parameter():
    a, b = _r18("L"), _r18("L")
    assert fingerprint(a) == fingerprint(b) == a.fingerprint()
    assert len(a.fingerprint()) == 16
    with torch.no_grad():
        a.model.layer3[0].bn1.running_var[5] += 1e-3
    assert a.fingerprint() != b.fingerprint()
    with torch.no_grad():
        a.model.layer3[0].bn1.running_var[5] -= 1e-3
        a.model.layer3[0].bn1.num_batches_tracked += 1  # a 0-d integer buffer
    assert a.fingerprint() != b.fingerprint()
    with torch.no_grad():
        a.model.layer3[0].bn1.num_batches_tracked -= 1
    assert a.fingerprint() == b.fingerprint()
    with torch.no_grad():
        a.model.fc.weight[0, 0] = torch.nextafter(a.model.fc.weight[0, 0], torch.tensor(1.0))  # one ulp
    assert a.fingerprint() != b.fingerprint()


def test_locked_image_tower_bit_identical_after_training_a_lit_model():
    torch.manual_seed(0)
    image = _r18("L")
    tok = wrap_tokenizer(tiny_wordpiece(), 12)
    text = create_text_tower("scratch", tokenizer=tok, width=32, depth=1, heads=2, lock="u")
    model = LiTModel(image, text)
    loss_fn = create_loss("softmax")
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert not any(p is q for p in trainable for q in image.parameters())
    opt = torch.optim.AdamW(trainable, lr=3e-3, weight_decay=0.1)
    fp_image, fp_text = image.fingerprint(), text.fingerprint()
    pixels = torch.randn(6, 3, 32, 32)
    tokens = tok(["a dog runs", "a cat sleeps", "two people ride bikes", "a red car", "a small boat",
                  "a man climbs"])
    model.train()
    assert not image.training and text.training
    losses = []
    for _ in range(6):
        out = model(tokens, pixels=pixels)
        loss = loss_fn(out["image_emb"], out["text_emb"], out["logit_scale"], out["logit_bias"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert image.fingerprint() == fp_image
    assert text.fingerprint() != fp_text
    fps = model.fingerprints()
    assert (fps["image"], fps["text"]) == (fp_image, text.fingerprint())

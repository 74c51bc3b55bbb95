"""Builders for tiny random-init Hugging Face models and tokenizers (no downloads)."""
from __future__ import annotations

from typing import Callable

CAPTIONS = [
    "a dog runs on the grass",
    "a black cat sleeps on a red sofa",
    "two people ride bikes down a hill",
    "a red car is parked on the street",
    "children play football in a park",
    "a man climbs a rock wall",
    "a woman reads a book under a tree",
    "a small boat on a calm lake",
]


def tiny_wordpiece(vocab_size: int = 120):
    from littune.towers import train_tokenizer

    return train_tokenizer(CAPTIONS * 3, vocab_size=vocab_size)


def tiny_hf_tokenizer(model_max_length: int = 64):
    """A transformers fast tokenizer around a WordPiece trained on a few captions ([PAD] = 0)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tiny_wordpiece(), unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", model_max_length=model_max_length)


# ---- image models: (model, image processor), each small enough to run in milliseconds ------------
def _vit():
    import transformers as tr

    model = tr.ViTModel(tr.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, image_size=32, patch_size=8))
    proc = tr.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.1, 0.2, 0.3],
                                image_std=[0.3, 0.2, 0.1], resample=2)
    return model, proc


def _dinov2():
    import transformers as tr

    model = tr.Dinov2Model(tr.Dinov2Config(hidden_size=40, num_hidden_layers=2, num_attention_heads=2,
                                           mlp_ratio=2, image_size=32, patch_size=8))
    proc = tr.BitImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32},
                                do_center_crop=True, image_mean=[0.485, 0.456, 0.406],
                                image_std=[0.229, 0.224, 0.225])
    return model, proc


def _clip():
    import transformers as tr

    cfg = tr.CLIPConfig(
        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=100, bos_token_id=0, eos_token_id=2, pad_token_id=1),
        vision_config=dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                           image_size=32, patch_size=8),
        projection_dim=16)
    proc = tr.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return tr.CLIPModel(cfg), proc


def _siglip():
    import transformers as tr

    model = tr.SiglipVisionModel(tr.SiglipVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                       intermediate_size=64, image_size=32, patch_size=8))
    return model, tr.SiglipImageProcessor(size={"height": 32, "width": 32})


def _resnet():
    import transformers as tr

    model = tr.ResNetModel(tr.ResNetConfig(embedding_size=8, hidden_sizes=[8, 24], depths=[1, 1],
                                           layer_type="basic"))
    # microsoft/resnet-* ship a ConvNeXt-style processor: resize to shortest_edge / crop_pct, crop.
    return model, tr.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.8)


def _convnext():
    import transformers as tr

    model = tr.ConvNextModel(tr.ConvNextConfig(hidden_sizes=[8, 20], depths=[1, 1], num_stages=2))
    return model, tr.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875)


HF_IMAGE_BUILDERS: dict[str, Callable] = {
    "vit": _vit, "dinov2": _dinov2, "clip": _clip, "siglip": _siglip, "resnet": _resnet, "convnext": _convnext,
}
# The embedding size each tower must report (CLIP: its vision width, not the text width or projection).
HF_IMAGE_EMBED = {"vit": 32, "dinov2": 40, "clip": 24, "siglip": 32, "resnet": 24, "convnext": 20}

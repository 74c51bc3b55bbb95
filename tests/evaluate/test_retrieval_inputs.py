"""Retrieval inputs: the exact errors bad embeddings and caption indices get (first ten offenders named),
the smallest valid problem, and what ``_check_inputs`` hands the metrics (float32 at least, one device,
a long index)."""
from __future__ import annotations

import re

import pytest
import torch

from littune.evaluate.retrieval import _check_inputs, retrieval_metrics


def whole(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_type_and_shape_errors_are_exact():
    with pytest.raises(TypeError, match=whole("image_emb and text_emb must be torch.Tensor")):
        retrieval_metrics(torch.eye(2), [[1.0, 0.0], [0.0, 1.0]], torch.arange(2))
    with pytest.raises(TypeError, match=whole("image_emb and text_emb must be torch.Tensor")):
        retrieval_metrics([[1.0, 0.0]], torch.eye(2), torch.arange(2))
    with pytest.raises(ValueError, match=whole(
            "image_emb and text_emb must be 2-D (N, D) and (M, D); got shapes (2, 2) and (2,)")):
        retrieval_metrics(torch.eye(2), torch.ones(2), torch.arange(2))
    with pytest.raises(ValueError, match=whole(
            "image_emb and text_emb must be 2-D (N, D) and (M, D); got shapes (2,) and (2, 2)")):
        retrieval_metrics(torch.ones(2), torch.eye(2), torch.arange(2))


def test_empty_sides_are_named():
    with pytest.raises(ValueError, match=whole("need at least one image and one text; got N=0, M=3")):
        retrieval_metrics(torch.empty(0, 2), torch.ones(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=whole("need at least one image and one text; got N=3, M=0")):
        retrieval_metrics(torch.ones(3, 2), torch.empty(0, 2), torch.zeros(0, dtype=torch.long))


def test_one_image_with_one_caption_is_a_valid_problem():
    m = retrieval_metrics(torch.tensor([[0.6, 0.8]]), torch.tensor([[0.8, 0.6]]), torch.tensor([0]), ks=(1,))
    assert (m["i2t_medr"], m["t2i_medr"], m["n_images"], m["n_texts"]) == (1.0, 1.0, 1, 1)


def test_bad_caption_indices_name_the_first_ten():
    t2i = torch.tensor([0, 1, 2] + [3 + i for i in range(12)])  # texts 3..14 point at images 3..14
    message = ("text_to_image points outside the 3 images for 12 text(s); "
               "first bad text indices [3, 4, 5, 6, 7, 8, 9, 10, 11, 12] -> image indices "
               "[3, 4, 5, 6, 7, 8, 9, 10, 11, 12]")
    with pytest.raises(ValueError, match=whole(message)):
        retrieval_metrics(torch.eye(3), torch.ones(15, 3), t2i)


def test_images_without_captions_name_the_first_ten():
    message = ("11 image(s) have no caption in text_to_image (first: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]); "
               "image->text recall is undefined for them")
    with pytest.raises(ValueError, match=whole(message)):
        retrieval_metrics(torch.ones(13, 2), torch.ones(2, 2), torch.tensor([0, 1]))


def test_inputs_come_back_in_float32_at_least_on_the_images_device():
    # meta tensors carry a device without data: the text side and the index must follow the images.
    img, txt, t2i = _check_inputs(torch.ones(2, 3, device="meta", dtype=torch.float16),
                                  torch.ones(2, 3, dtype=torch.float16), torch.tensor([1, 0], dtype=torch.int32), (1,))
    assert (img.device.type, txt.device.type, t2i.device.type) == ("meta", "meta", "meta")
    assert (img.dtype, txt.dtype, t2i.dtype) == (torch.float32, torch.float32, torch.int64)
    img, txt, t2i = _check_inputs(torch.ones(2, 3, dtype=torch.float64), torch.ones(2, 3), torch.tensor([1, 0]), (1,))
    assert (img.dtype, txt.dtype) == (torch.float64, torch.float64)


def test_half_inputs_are_scored_in_float32():
    # Image 0 scores its caption 2048 and image 1's caption 2049: in float16 both round to 2048 (a tie, which
    # counts in the query's favour); in float32 the negative is above, so image 0 ranks its caption 2nd.
    img = torch.tensor([[1.0, 1.0], [-1.0, 0.0]]).half()
    txt = torch.tensor([[2048.0, 0.0], [2048.0, 1.0]]).half()
    assert (img @ txt.T)[0, 0] == (img @ txt.T)[0, 1]  # the tie half precision itself would see
    m = retrieval_metrics(img, txt, torch.tensor([0, 1]), ks=(1,))
    assert m["i2t_medr"] == 1.5

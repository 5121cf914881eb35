"""PolicyIO's numpy transforms against hand-computed values and torch's (the former implementation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vla.policy_io import normalize_images, pad_prompts, resize_images


@pytest.mark.parametrize("src, size", [(128, 64), (96, 64), (48, 64), (64, 32), (100, 37)])
def test_resize_matches_torch_antialiased_bilinear_within_one_level(src: int, size: int) -> None:
    img = np.random.default_rng(src).integers(0, 256, (3, src, src, 3), dtype=np.uint8)
    ours = resize_images(img, size)
    x = torch.from_numpy(img).permute(0, 3, 1, 2).float()
    ref = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    ref = ref.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert ours.shape == (3, size, size, 3) and ours.dtype == np.uint8
    assert diff.max() <= 1 and (diff == 0).mean() > 0.95


def test_resize_at_the_input_size_is_an_exact_copy_and_bad_images_are_refused() -> None:
    img = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    out = resize_images(img, 64)
    assert np.array_equal(out, img) and out is not img
    with pytest.raises(ValueError, match="uint8"):
        resize_images(img.astype(np.float32), 32)


def test_normalize_images_hand_computed() -> None:
    img = np.array([[[[0, 255, 51]]]], dtype=np.uint8)  # [1, 1, 1, 3] HWC
    out = normalize_images(img, (0.5, 0.5, 0.5), (0.5, 0.25, 0.2))
    assert out.shape == (1, 3, 1, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [(0 - 0.5) / 0.5, (1 - 0.5) / 0.25, (0.2 - 0.5) / 0.2], rtol=1e-6)


def test_pad_prompts_left_pads_and_refuses_overflow() -> None:
    ids, mask = pad_prompts([[5, 6], [7]], 4, pad_id=0)
    assert ids.tolist() == [[0, 0, 5, 6], [0, 0, 0, 7]] and mask.tolist() == [[0, 0, 1, 1], [0, 0, 0, 1]]
    with pytest.raises(ValueError, match="prompt_len=1"):
        pad_prompts([[1, 2]], 1, 0)

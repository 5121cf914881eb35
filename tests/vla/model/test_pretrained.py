"""Local pretrained directories: a Qwen2 LM + its tokenizer and a SigLIP tower load without the network,
and the checkpoint rebuilds without those directories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.vla.model.conftest import (
    checkpoint_actions,
    io_of,
    make_obs,
    make_policy,
    runtime,
)
from vla.config import LMConfig, TextConfig, VisionConfig, debug_config
from vla.model import VLAConfig, VLAPolicy
from vla.text import TextTokenizer


@pytest.fixture(scope="module")
def pretrained_dirs(tmp_path_factory):
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    root = tmp_path_factory.mktemp("hf")
    text = TextTokenizer.train_embedded(300, ["pick up the red cube"])
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=text.backend, bos_token="<s>", eos_token="</s>",
                                     pad_token="<pad>", unk_token="<unk>")
    hf_tok.save_pretrained(root / "lm")
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)
                     ).save_pretrained(root / "lm")
    SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=32, patch_size=8)
                      ).save_pretrained(root / "vision")
    return root


def test_policy_from_local_pretrained_dirs_round_trips(tmp_path, pretrained_dirs) -> None:
    base = debug_config()
    cfg = VLAConfig.from_dict({
        **base.to_dict(),
        "vision": {**base.to_dict()["vision"], "pretrained": str(pretrained_dirs / "vision"), "hf_config": {}},
        "lm": {"model_type": "qwen2", "pretrained": str(pretrained_dirs / "lm")},
        "text": {"kind": "pretrained", "prompt_len": 48},
    })
    assert isinstance(cfg.vision, VisionConfig) and isinstance(cfg.lm, LMConfig) and isinstance(cfg.text, TextConfig)
    policy = make_policy(cfg)
    assert type(policy.lm).__name__ == "Qwen2ForCausalLM"
    assert policy.text_vocab_size == 300 and policy.vocab_size == 300 + 256
    before = runtime(policy).predict_action(make_obs(0))
    policy.save_pretrained(tmp_path / "ckpt", io_of(policy))
    loaded = VLAPolicy.from_pretrained(tmp_path / "ckpt")  # no reference to the pretrained dirs remains
    assert loaded.cfg.lm.pretrained is None and loaded.cfg.vision.pretrained is None
    np.testing.assert_array_equal(checkpoint_actions(tmp_path / "ckpt", [make_obs(0)])[0], before)


def test_pretrained_dinov2_at_another_resolution_interpolates_its_positions(tmp_path):
    """The fixed-table shortcut for traced DINOv2 towers applies only when the table fits the image size;
    a pretrained tower used at a new resolution keeps transformers' interpolation."""
    from transformers import AutoConfig, AutoModel

    from vla.config import VisionConfig
    from vla.model.vision import VisionTower

    hf = AutoConfig.for_model("dinov2", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=64, patch_size=14, image_size=56)
    AutoModel.from_config(hf).save_pretrained(tmp_path / "dino")
    tower = VisionTower(VisionConfig(model_type="dinov2", pretrained=str(tmp_path / "dino"), image_size=28,
                                     coord_channels=False, drop_cls=True))
    assert tower.num_patches == 4
    assert tower(torch.zeros(1, 3, 28, 28)).shape == (1, 4, 32)

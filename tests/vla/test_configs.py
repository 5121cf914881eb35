"""Every shipped YAML config parses, and every model config builds a policy whose forward runs."""

import pytest
import torch

from vla.configs import CONFIG_ROOT, names
from vla.model import VLAConfig, VLAPolicy
from vla.model.sequence import example_batch
from vla.train import TrainConfig

GPU_ONLY = {"vla_945m"}  # GPU-bench shapes, too big to build in the CPU suite


def test_named_configs_ship_inside_the_package() -> None:
    assert {"tiny", "tiny_linear", "tiny_mlp", "tiny_resampler", "vla_945m"} <= set(names("model"))
    assert "tiny" in names("train") and CONFIG_ROOT.parent.name == "vla"


@pytest.mark.parametrize("name", names("train"))
def test_train_configs_resolve_their_model(name: str) -> None:
    cfg = TrainConfig.load(name)
    assert cfg.model_config().name
    assert TrainConfig.load(CONFIG_ROOT / "train" / f"{name}.yaml") == cfg  # a path works as well as the name


@pytest.mark.parametrize("name", sorted(set(names("model")) - GPU_ONLY))
def test_model_configs_build_and_run(name: str) -> None:
    cfg = VLAConfig.load(name)
    torch.manual_seed(0)
    policy = VLAPolicy.from_config(cfg, instructions=["reach the red cube"]).eval()
    b = example_batch(cfg, 1, text_vocab=policy.prompt_vocab_size)
    with torch.no_grad():
        logits = policy.forward(**b)
    assert logits.shape == (1, policy.num_action_tokens, policy.vocab_size)


@pytest.mark.parametrize("name", sorted(GPU_ONLY))
def test_bench_configs_parse(name: str) -> None:
    """GPU-bench shapes (too big to build in the CPU suite): they parse and name a valid model."""
    cfg = VLAConfig.load(name)
    assert cfg.name and cfg.lm.hf_config["num_hidden_layers"] >= 1

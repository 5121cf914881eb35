"""Every shipped YAML config parses, and every model config builds a policy whose forward runs."""

from pathlib import Path

import pytest
import torch

from vla.model import VLAConfig, VLAPolicy
from vla.model.sequence import example_batch
from vla.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted((ROOT / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_train_configs_resolve_their_model(path: Path) -> None:
    cfg = TrainConfig.from_yaml(path)
    assert cfg.model_config().name


@pytest.mark.parametrize("path", sorted((ROOT / "model").glob("*.yaml")), ids=lambda p: p.name)
def test_model_configs_build_and_run(path: Path) -> None:
    cfg = VLAConfig.from_yaml(path)
    torch.manual_seed(0)
    policy = VLAPolicy.from_config(cfg, instructions=["reach the red cube"]).eval()
    b = example_batch(cfg, 1, text_vocab=policy.text_vocab_size)
    with torch.no_grad():
        logits = policy.forward(**b)
    assert logits.shape == (1, policy.num_action_tokens, policy.vocab_size)


@pytest.mark.parametrize("path", sorted((ROOT / "bench").glob("*.yaml")), ids=lambda p: p.name)
def test_bench_configs_parse(path: Path) -> None:
    """GPU-bench shapes (too big to build in the CPU suite): they parse and name a valid model."""
    cfg = VLAConfig.from_yaml(path)
    assert cfg.name and cfg.lm.hf_config["num_hidden_layers"] >= 1

"""scripts/probe_paraphrases.py on a tiny random BERT (vocabulary: the templates' words): every held-out
phrasing of every task gets a nearest training phrasing, and a phrasing identical to a training one (the
encoder maps equal inputs to equal embeddings) finds its own task at cosine 1."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np

import sim

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("probe_paraphrases", ROOT / "scripts" / "probe_paraphrases.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def tiny_encoder(path: Path) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = set()
    for t in sim.list_tasks():
        env = sim.task_entry(t).env_cls
        for s in (*env.TRAIN_TEMPLATES, *env.HELDOUT_TEMPLATES):
            words |= set(re.findall(r"\w+|[^\w\s]", s.format(**probe.SLOTS).lower()))
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    path.mkdir()
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words)])}
    tk = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    BertTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                      sep_token="[SEP]", mask_token="[MASK]").save_pretrained(path)
    BertModel(BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=0, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(path)  # no layers: pooled word embeddings
    return path


def test_every_heldout_phrasing_is_matched(tmp_path, monkeypatch):
    enc = tiny_encoder(tmp_path / "enc")
    assert probe.main(["--encoder", str(enc), "--out", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    n_held = sum(len(sim.task_entry(t).env_cls.HELDOUT_TEMPLATES) for t in sim.list_tasks())
    assert r["heldout"] == n_held == len(r["rows"]) and 0 <= r["right_task"] <= n_held
    # a "held-out" phrasing equal to a training one: its nearest neighbour is itself
    env = sim.task_entry("PickCube").env_cls
    monkeypatch.setattr(env, "HELDOUT_TEMPLATES", (env.TRAIN_TEMPLATES[1],))
    assert probe.main(["--encoder", str(enc), "--tasks", "ReachCube", "PickCube", "--out", str(tmp_path / "s.json")]) == 0
    row = next(x for x in json.loads((tmp_path / "s.json").read_text())["rows"] if x["task"] == "PickCube")
    assert row["right_task"] and abs(row["cosine"] - 1) < 1e-5 and row["nearest"] == row["heldout"]


def test_linear_probe_scores_a_heldout_split_equal_to_training_as_training(tmp_path, monkeypatch):
    enc = tiny_encoder(tmp_path / "enc")
    for t in ("ReachCube", "PickCube"):  # held-out templates = training ones: held-out accuracy = training's
        env = sim.task_entry(t).env_cls
        monkeypatch.setattr(env, "HELDOUT_TEMPLATES", env.TRAIN_TEMPLATES)
    assert probe.main(["--encoder", str(enc), "--tasks", "ReachCube", "PickCube", "--linear-probe",
                       "--out", str(tmp_path / "p.json")]) == 0
    lp = json.loads((tmp_path / "p.json").read_text())["linear_probe"]
    assert lp["train_instructions"] == lp["heldout_instructions"] == 2 * 4 * 6  # 4 templates x 6 colours each
    for kind in ("bpe_bag", "encoder"):
        r = lp["results"][kind]
        assert set(r) == {"task", "first colour"}  # one-slot templates: no second colour to probe
        for v in r.values():
            assert v["heldout_acc"] == v["train_acc"] and v["heldout_n"] == 48
    assert lp["results"]["bpe_bag"]["task"]["train_acc"] == 1.0  # the two tasks' phrasings share no bag of tokens


def test_probe_on_hand_made_features():
    x = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1]]  # classes a, b by the first two / last two features
    r = probe.probe(x[:4], ["a", "a", "b", "b"], x[4:], ["a", "b"])
    assert r["train_acc"] == 1.0 and r["heldout_acc"] == 0.5 and r["heldout_acc_per_class"] == {"a": 1.0, "b": 0.0}

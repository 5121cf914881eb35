"""Text tokenizer of the policy: an embedded byte-level BPE, or a pretrained `AutoTokenizer` from a local dir.

    tok = TextTokenizer.train_embedded(vocab_size=512, texts=["pick up the red cube", ...])
    tok = TextTokenizer.from_pretrained_dir("/models/qwen2-0.5b")      # local files only
    ids = tok.encode("In: What action should the robot take to pick up the red cube?\\nOut:")  # BOS first
    tok.save(ckpt_dir); TextTokenizer.load(ckpt_dir, kind="embedded")

The embedded tokenizer is byte-level, so any instruction (paraphrases, unseen words) encodes without an
unknown token; training it on the prompt template plus the dataset's task strings only makes those
shorter. Its file (`tokenizer.json`) travels with every checkpoint, so ids never drift.
"""

from __future__ import annotations

from pathlib import Path

from vla.config import OPENVLA_PROMPT

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0..3 in the embedded tokenizer

# Seed corpus for the embedded BPE: the prompt template and common manipulation words, so a tokenizer
# trained without a dataset (tests, from_config) still merges the frequent pieces.
_SEED_CORPUS = (
    "pick up the red cube", "pick up the green cube", "pick up the blue cube", "lift the cube",
    "push the cube to the target", "push the block onto the goal", "stack the red cube on the green cube",
    "put the cube in the bowl", "place the block on the plate", "open the drawer", "close the drawer",
    "reach the target", "move the gripper to the goal", "grasp the object", "slide the puck to the left",
    "press the button", "turn the knob", "insert the peg into the hole", "put the red block on the blue block",
)


class TextTokenizer:
    """Thin wrapper with one interface over `tokenizers.Tokenizer` and HF `PreTrainedTokenizerBase`."""

    def __init__(self, kind: str, backend: object, vocab_size: int, pad_id: int, bos_id: int | None,
                 eos_id: int | None) -> None:
        self.kind = kind
        self.backend = backend
        self.vocab_size = int(vocab_size)  # ids the LM reserves for text: [0, vocab_size)
        self.pad_id = int(pad_id)
        self.bos_id = bos_id
        self.eos_id = eos_id

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def train_embedded(cls, vocab_size: int, texts: list[str] | tuple[str, ...] = ()) -> TextTokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        corpus = [OPENVLA_PROMPT.format(instruction=t) for t in (*_SEED_CORPUS, *texts)]
        tok.train_from_iterator(sorted(set(corpus)), trainer=trainer)  # sorted: order-independent result
        return cls._wrap_embedded(tok, vocab_size)

    @classmethod
    def _wrap_embedded(cls, tok: object, vocab_size: int) -> TextTokenizer:
        n = tok.get_vocab_size()
        if n > vocab_size:
            raise ValueError(f"embedded tokenizer has {n} ids, more than TextConfig.vocab_size={vocab_size}")
        ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
        if ids != [0, 1, 2, 3]:
            raise ValueError(f"embedded tokenizer special ids must be 0..3, got {ids}")
        return cls("embedded", tok, vocab_size, pad_id=0, bos_id=1, eos_id=2)

    @classmethod
    def from_pretrained_dir(cls, path: str | Path) -> TextTokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            raise ValueError(f"tokenizer at {path} has neither a pad nor an eos token")
        return cls("pretrained", tok, len(tok), pad_id=pad, bos_id=tok.bos_token_id, eos_id=tok.eos_token_id)

    @classmethod
    def from_tokenizer_json(cls, path: str | Path, vocab_size: int, bos_id: int | None, pad_id: int,
                            eos_id: int | None = None) -> TextTokenizer:
        """A `tokenizer.json` run by the `tokenizers` library as is (no transformers), `bos_id` prepended:
        what transformers' fast Llama tokenizer computes from the same file (converted OpenVLA checkpoints)."""
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the checkpoint's tokenizer.json is missing")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust library's errors name no file
            raise ValueError(f"{path}: cannot be read by the tokenizers library ({e})") from None
        tok.no_padding()  # the policy pads prompts itself (left, to TextConfig.prompt_len); e.g. MiniLM's file pads to 128
        tok.no_truncation()  # a prompt too long for prompt_len is an error, never silently cut
        for name, i in (("bos_id", bos_id), ("pad_id", pad_id)):
            if i is not None and tok.id_to_token(int(i)) is None:
                raise ValueError(f"{path}: TextConfig.{name}={i} is not an id of this tokenizer")
        return cls("tokenizer_json", tok, vocab_size, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id)

    @classmethod
    def load(cls, directory: str | Path, kind: str, vocab_size: int, bos_id: int | None = None,
             pad_id: int | None = None) -> TextTokenizer:
        """Load what `save` wrote into a checkpoint directory (`bos_id` / `pad_id`: kind tokenizer_json)."""
        directory = Path(directory)
        if kind == "tokenizer_json":
            if pad_id is None:
                raise ValueError("TextConfig.kind='tokenizer_json' needs pad_id")
            return cls.from_tokenizer_json(directory / "tokenizer.json", vocab_size, bos_id, pad_id)
        if kind == "embedded":
            from tokenizers import Tokenizer

            path = directory / "tokenizer.json"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: embedded text tokenizer missing from the checkpoint")
            return cls._wrap_embedded(Tokenizer.from_file(str(path)), vocab_size)
        if kind == "pretrained":
            return cls.from_pretrained_dir(directory)
        raise ValueError(f"unknown text tokenizer kind {kind!r}; expected embedded or pretrained")

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        if self.kind in ("embedded", "tokenizer_json"):
            self.backend.save(str(directory / "tokenizer.json"))
        else:
            self.backend.save_pretrained(str(directory))

    # ---- use ------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, BOS first where the tokenizer has one."""
        if self.kind == "embedded":
            ids = self.backend.encode(text).ids
        elif self.kind == "tokenizer_json":
            ids = self.backend.encode(text, add_special_tokens=False).ids
        else:
            ids = self.backend(text, add_special_tokens=False)["input_ids"]
        return ([self.bos_id] if self.bos_id is not None else []) + list(ids)

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=True)

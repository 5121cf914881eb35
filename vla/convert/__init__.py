"""Converters from other projects' checkpoints into native vla checkpoints (torch).

    from vla.convert.openvla import convert_openvla, inspect_openvla
    vla convert openvla --checkpoint SRC --out DST [--unnorm-key KEY] [--camera NAME] [--dtype bf16|fp16|fp32]

`vla.convert.safetensors_stream` reads and writes safetensors one tensor at a time, so a 7B conversion
needs about one tensor's memory, not a shard's.
"""

"""vla: a robot vision-language-action policy runtime.

Packages: `vla.tokenizers` (action tokens), `vla.normalization` (action/state statistics),
`vla.data` (LeRobot-format datasets), `vla.cli` (the `vla` command, the composition root).
Run `vla --help` for the workflows.
"""

__version__ = "0.1.0"

"""`python -m vla.cli` == the `vla` command."""

import sys

from vla.cli import main

sys.exit(main())

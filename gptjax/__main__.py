"""`python -m gptjax ...`: the same as the `gptjax` command (see gptjax/cli.py)."""

import sys

from gptjax.cli import main

sys.exit(main())

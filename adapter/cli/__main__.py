"""``python -m adapter.cli``: the same as ``hf-adapter``."""

import sys

from adapter.cli import main

sys.exit(main())

"""``python -m procedures.cli``: the same as ``xbar``."""
import sys

from .registry import main

sys.exit(main())

"""``python -m hierarchy``: the ``hierarchy`` command."""

import sys

from hierarchy.cli import main

sys.exit(main())

"""``python -m cleanroom.cli`` — the same as the ``cleanroom`` command."""

import sys

from cleanroom.cli import main

sys.exit(main())

"""``python -m nopx`` is the ``nopx`` command."""

import sys

from nopx.cli import main

sys.exit(main())

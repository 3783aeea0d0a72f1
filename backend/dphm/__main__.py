"""``python -m dphm`` is the same as the ``dphm`` command."""

import sys

from .cli import main

sys.exit(main())

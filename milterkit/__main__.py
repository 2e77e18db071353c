"""``python -m milterkit``: the same as the ``milterkit`` command."""

import sys

from .cli import main

sys.exit(main())

"""``python -m ravit_keras ...`` is the ``ravit`` command line."""

import sys

from ravit_keras.cli import main

sys.exit(main())

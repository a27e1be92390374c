"""``python -m stimloop.gui --session PREFIX``: the session window in its own process."""

import sys

from stimloop.gui.app import main

sys.exit(main())

"""``python -m stimloop.gui --session PREFIX``: the session window in its own process."""

import sys

from stimloop.stream.lslconfig import use_machine_scope

# Sessions are local (their control channel listens on 127.0.0.1): resolve on this machine,
# unless the user chose an LSL configuration. This must precede the first use of liblsl.
use_machine_scope()

from stimloop.gui.app import main  # noqa: E402

sys.exit(main())

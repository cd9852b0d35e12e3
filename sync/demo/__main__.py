"""``python -m sync.demo``: the demo's entry point (the work is in :mod:`sync.demo.run`)."""

import sys

from sync.demo.run import main

sys.exit(main())

"""``python -m cronpolicy``: the cronpolicy command."""

import sys

from cronpolicy.tooling.cli import main

sys.exit(main())

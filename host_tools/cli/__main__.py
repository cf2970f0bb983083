"""`python -m host_tools.cli ...`: the tapkit command line."""

import sys

from host_tools.cli.app import main

sys.exit(main())

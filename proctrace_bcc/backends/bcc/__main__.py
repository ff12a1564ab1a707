"""`python -m proctrace_bcc.backends.bcc --check` (see check.py)."""

import sys

from proctrace_bcc.backends.bcc.check import main

sys.exit(main())

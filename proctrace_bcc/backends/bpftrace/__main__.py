"""`python -m proctrace_bcc.backends.bpftrace --check` (see check.py)."""

import sys

from proctrace_bcc.backends.bpftrace.check import main

sys.exit(main())

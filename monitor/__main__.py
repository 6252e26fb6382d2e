"""`python -m monitor` is the `llm-monitor` command."""

import sys

from monitor.cli import main

sys.exit(main())

"""`python -m monitor` is the `llm-monitor` command: it hands over to the composition root."""

import sys

from llm_monitor.cli import main

sys.exit(main())

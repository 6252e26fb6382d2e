"""`python -m llm_monitor` is the `llm-monitor` command."""

import sys

from llm_monitor.cli import main

sys.exit(main())

"""`python -m tests.e2e.poisoned_monitor ARGS` runs `python -m monitor ARGS`, except that every
result of a provider named `Overflow` or `Surrogate` reaches the result buffer carrying a value
no database driver takes (an int of 2**70, a lone surrogate). The probe boundary sanitizes what
providers send, so this is how a test puts such rows in front of the writer: it checks the
storage side's own defence.
"""

from __future__ import annotations

import dataclasses
import sys

from llm_monitor.cli import main
from monitor.runner import ResultBuffer

POISON = {
    "Overflow": {"stream_bytes": 2**70},
    "Surrogate": {"finish_reason": "stop\udc80"},
}
_put = ResultBuffer.put


def _poisoned_put(self, model_id, provider, result):
    _put(self, model_id, provider, dataclasses.replace(result, **POISON.get(provider, {})))


ResultBuffer.put = _poisoned_put  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

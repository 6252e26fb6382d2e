"""One router per file: `models` (live figures, history), `health` (probes, metrics), `admin`."""

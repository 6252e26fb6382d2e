"""Loopback streaming servers with known timings and faults.

Shared by the tests and the benchmarks, and meant for anything else that needs a provider with
known timings (a demo, a self-test): a scripted server on 127.0.0.1 whose own clock is the
ground truth for TTFT and decode rate (`stream_server`).

Layering: this package may import the pure modules of `monitor` (`monitor.stats`,
`monitor.probes`' pure modules); it never imports the store, metrics, runner or `api`.
"""

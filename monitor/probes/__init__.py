"""The probe engine: `engine.run_probe(client, target)` measures one streaming request on the
client from `transport.build_client()`; `registry.PROTOCOLS` maps a protocol name to its module's
declarative `WireProtocol`; `outcomes` decides which `ErrorKind` a failure is and scrubs every
provider text.

Adding a protocol = one module declaring a WireProtocol, one entry in `registry.py`, one test file.
"""

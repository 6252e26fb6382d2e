"""The composition root of llm-endpoint-monitor: the `llm-monitor` command and the process wiring.

`cli` parses the command line, builds the one `Settings` object and dispatches the subcommands;
`service` builds every long-lived resource of a running process (store, metrics registry, HTTP
client, live figures, runner, scheduler, the API app and its HTTP server) and owns start-up,
reload and shutdown. This package sits above both `api` and `monitor` and is the only one that
imports both; nothing imports it except `monitor.__main__` (the `python -m monitor` alias).
"""

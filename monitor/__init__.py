"""llm-endpoint-monitor: probes LLM provider endpoints, stores results, serves live figures.

Package map: `probes/` measures one streaming request; `catalog` reads the endpoint config;
`store` persists results; `stats` derives live figures; `metrics` exposes them to Prometheus;
`runner` composes probe -> store -> metrics; `scheduler` runs the runner per endpoint; `cli` is
the entrypoint that builds every long-lived resource and passes it in.
"""

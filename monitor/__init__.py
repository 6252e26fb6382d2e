"""llm-endpoint-monitor's domain: probing LLM provider endpoints, storing and summarising results.

Package map: `probes/` measures one streaming request; `catalog` reads the endpoint config;
`store` persists results; `stats` derives live figures (pure functions); `live` keeps them per
model; `metrics` exposes them to Prometheus; `runner` composes probe -> store -> metrics;
`scheduler` runs the runner per endpoint; `settings` is the one settings object. The process
that builds these resources and passes them in is the composition root, `llm_monitor`.
"""

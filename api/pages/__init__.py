"""The public face: server-rendered status pages and the embeddable live card.

- `routes.py`: `/status`, `/status/models/{id}`, `/embed/models/{id}`, the stylesheet
- `view.py`: cards, model status, search/filter/paging, formatting (pure)
- `charts.py`: server-side SVG charts and the 90-day uptime bar (pure)
- `sources.py`: history roll-ups, incidents and maintenance windows for the model page
- `rendering.py`: prebuilt bodies with strong ETags and gzip (also used by the badge route)
- `templates/`, `static/`: Jinja2 templates and the one stylesheet
"""

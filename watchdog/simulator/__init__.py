"""A faithful local HCP Terraform / Terraform Enterprise API server.

The demo runs against it and every end-to-end test uses it as the TFC peer. It follows
the public API docs (https://developer.hashicorp.com/terraform/cloud-docs/api-docs)
for shapes, status codes and headers.

Layout (one job per module):
- `clock.py`     the simulated clock (ages, `Date` headers, cool-offs all come from it)
- `runs.py`      the run state machine: status sets, `actions` flags, timestamp keys
- `state.py`     the world: organizations, principals and tokens, workspaces, runs, locks
- `render.py`    JSON:API documents for workspaces, runs, users, teams, projects
- `ratelimit.py` per-principal token buckets
- `faults.py`    injected faults (status codes, latency, broken bodies, dropped connections)
- `app.py`       the `/api/v2` Starlette routes and the middleware around them
- `admin.py`     the `/_sim/` admin API used by tests and the demo (no auth)
- `scenario.py`  scenario YAML loading and the large-organization generator
- `cli.py`       `tfc-watchdog simulator`
"""

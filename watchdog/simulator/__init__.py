"""A faithful local HCP Terraform / Terraform Enterprise API server.

The demo runs against it and every end-to-end test uses it as the TFC peer. It follows
the public API docs (https://developer.hashicorp.com/terraform/cloud-docs/api-docs)
for shapes, status codes and headers; docs/tfc-api.md lists the facts it models.

It is a leaf: it imports nothing else from the `watchdog` package (the import-linter contract
`simulator-leaf` in pyproject.toml holds it), so that the tests' peer cannot agree with the
product by construction. Where both need the same API fact (the final run statuses), each
keeps its own copy and a unit test compares them.

Layout (one job per module; each imports only modules above it in this list):
- `clock.py`         the simulated clock (ages, `Date` headers, cool-offs all come from it)
- `access.py`        access levels and the `permissions` blocks for the calling token
- `errors.py`        `ApiError` and the JSON:API `errors` body
- `runs.py`          the run state machine: status sets, `actions` flags, timestamp keys
- `state.py`         the world: organizations, principals and tokens, workspaces, runs, locks,
                     state versions
- `render.py`        JSON:API documents for workspaces, runs, users, teams, projects
- `scenario.py`      scenario YAML loading (`scenarios/`) and the large-organization generator
- `ratelimit.py`     per-principal token buckets
- `faults.py`        injected faults (status codes, latency, broken bodies, dropped connections)
- `core.py`          `Simulator` (world, settings, limiter, faults, request log) and `Settings`
- `jsonapi.py`       the media type, `document()`/`error()` responses, pagination
- `endpoint.py`      `endpoint()`: authentication, rate limits, content type; the handler `Ctx`
- `middleware.py`    what wraps every API request: headers, simulated `Date`, faults, latency,
                     the request log
- `api.py`           the `/api/v2` workspaces, runs and account endpoints (`api.ROUTES`)
- `terraform_api.py` what the Terraform CLI's `cloud` block calls (discovery, state versions,
                     blobs)
- `admin.py`         the `/_sim/` admin API used by tests and the demo (no auth)
- `app.py`           `build_app()`: mounts the route lists behind the middleware
- `tls.py`           a self-signed certificate for serving HTTPS
- `cli.py`           `tfc-watchdog simulator` (it serves `gitlab.py`'s app under `/gitlab`)

Beside it, self-contained (it imports no other module of this package):
- `gitlab.py`        a GitLab-compatible endpoint for GitLab-managed Terraform state, an app
                     of its own (`build_gitlab_app`): the state API Terraform's `http` backend
                     calls, with GitLab's lock semantics, and the GraphQL queries the watchdog
                     sends

Where routes go: a new `/api/v2` endpoint of the workspaces or runs APIs is an entry in
`api.ROUTES`, its handler an `async def (ctx: Ctx) -> Response` wrapped by `endpoint()`. A
new API family (another service's endpoints) gets its own module with its own route list,
using `endpoint`/`jsonapi` if it speaks JSON:API, and one `Mount` in `app.build_app()`.
Per-request behaviour for every route (faults, latency, logging) belongs in the middleware;
a new fault kind is declared in faults.py.
"""

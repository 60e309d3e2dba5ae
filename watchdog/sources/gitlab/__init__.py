"""GitLab-managed Terraform state (Terraform's `http` backend on GitLab) as a source of locks.

- `client.py` the HTTP client: GraphQL reads, the REST unlock, limits, errors, the server clock
- `parse.py`  GraphQL answers -> `BackendLock`s (pure)
- `source.py` the source: observe every configured project, re-read one state, unlock
"""

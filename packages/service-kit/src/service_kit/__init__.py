"""What every HTTP app on the database shares.

* `service_kit.app`      - `create_service_app`: state, lifespan, body limit, errors, /health
* `service_kit.sessions` - the caller's session as a FastAPI dependency (anon or user, RLS)
* `service_kit.tokens`   - Supabase access-token verification (HS256 secret or JWKS)
* `service_kit.errors`   - the package's errors mapped to HTTP, once for every app
* `service_kit.pages`    - repository rows to response models (unreadable rows never a 500)
* `service_kit.params`   - shared request parameters: cursor, page size, ISO timestamps, no NUL
* `service_kit.egress`   - outbound HTTP to user-chosen URLs: public HTTPS endpoints only
* `service_kit.supabase` - supabase-py clients (service and per-user)
* `service_kit.console`  - CLI output: Rich on a terminal, plain lines or JSON otherwise
"""

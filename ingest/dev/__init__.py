"""The local development stack: embedded Postgres and Redis, the launcher, the demo calls."""

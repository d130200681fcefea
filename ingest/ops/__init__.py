"""The operator libraries the CLI and the /ops page share: events, backlog, dead letters, rebuild."""

"""The /ops page: routes, the guard in front of them, the data they read, login, templates."""

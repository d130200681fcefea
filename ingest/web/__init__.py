"""The web process: the Starlette app that verifies, bounds, answers and queues every delivery."""

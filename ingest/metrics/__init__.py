"""Prometheus metrics: counters, scrape-time gauges, the exposition, multiprocess directories."""

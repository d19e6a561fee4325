"""Stage 7: the request store and Prometheus metrics for the served model."""

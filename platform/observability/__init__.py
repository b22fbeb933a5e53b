"""What an operator watches: readiness checks and Prometheus metrics of the API and workers."""

"""Operating replyflow: Prometheus metrics, alerts an operator acts on, and log context for every run step."""

"""Celery task names of the agent queue, explicit and stable: producers queue by name."""

AGENT_RUN = "corral.agent.run"

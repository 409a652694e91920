"""Multi-agent patterns as graph builders: pipeline, debate, consensus, supervisor-worker."""

"""Quality models: CENIQA and its parts, other methods, classical baselines; one registry and factory."""

"""Benchmarks: IQA metrics, evaluation protocols, suites, and speed benchmarks of the engine."""

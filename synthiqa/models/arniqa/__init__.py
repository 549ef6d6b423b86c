"""ARNIQA: self-supervised training of an encoder on equally degraded reference pairs, Ridge on its frozen
features."""

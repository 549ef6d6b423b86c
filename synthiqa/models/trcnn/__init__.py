"""TRCNN: a CNN feature map read by a transformer encoder with a quality token."""

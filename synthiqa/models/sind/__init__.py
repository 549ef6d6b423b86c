"""SIND: TRCNN's network trained with scene sampling and per-scene scale-shift alignment."""

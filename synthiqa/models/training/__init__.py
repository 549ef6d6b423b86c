"""Training infrastructure every method reuses: the loop and checkpoints, several processes, the launcher,
and on-the-fly reference parts with their fixed evaluation sets."""

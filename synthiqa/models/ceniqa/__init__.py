"""CENIQA: the network, its three-stage training and predictor, its configuration and its ablation study."""

"""Building blocks shared by the methods: backbones (ours and timm's), feature extractors, regression heads,
losses, the torch Gaussian mixture and Ridge on frozen features."""

"""Reports: distortion grids, t-SNE, cluster plots, prediction scatter plots and one HTML report."""

"""Datasets: generate labelled distorted sets from references; load LIVE, KADID-10k, CSV, generated sets."""

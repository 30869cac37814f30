"""Batch and streaming pipelines on Ray Data, Train and Tune."""

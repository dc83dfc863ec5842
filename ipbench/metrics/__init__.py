"""Metrics, installed as ``ipbench.metrics``: plain functions over tensors."""

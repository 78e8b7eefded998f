"""Measurement: latency harness, accuracy, verification against a reference, results and reports."""

"""Measurement: latency harness, accuracy, machine fingerprint, results and reports."""

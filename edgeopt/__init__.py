"""edgeopt: prepare trained models for production and edge targets.

Importing this package is cheap: torch, onnxruntime, TensorRT and pycuda load only
where a stage or runtime needs them.
"""

__version__ = "0.1.0"

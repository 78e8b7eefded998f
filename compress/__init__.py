"""The structural methods: pruning, distillation, weight sharing, ensembles, structure sweeps
(torch → torch), and codebook packing (ONNX → ONNX). Each is listed in edgeopt.stages."""

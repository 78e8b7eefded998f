"""The shared vocabulary every layer stands on; imports nothing else of the project.

artifact (the Artifact record), torch_artifact (saving and rebuilding torch artifacts),
torch_files (TorchScript archives, exported programs and trusted pickles as model sources),
errors, context (what a stage gets), data (sample splits), factory, onnx_model, numeric,
machine, cpu and targets. Import the module you need: this package re-exports nothing, so
importing one stays cheap.
"""

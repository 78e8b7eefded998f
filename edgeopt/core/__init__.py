"""The shared vocabulary every layer stands on. Imports nothing else of the project."""

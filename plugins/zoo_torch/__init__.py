"""The PyTorch runtime: the Llama model, its KV cache, checkpoint formats and conversion.

Importing this package does not import torch; the modules that need it
(``model``, ``checkpoints``, ``runtime``, ...) do.
"""

"""ripple.models: edit representations, ONNX runtime and bundled models.

Plain Python + numpy; never imports pygls or lsprotocol, and only ``models.nets``
(used by training) imports torch.
"""

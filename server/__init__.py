"""ripple.server: the LSP process (pygls) and the ``ripple`` command line.

The only package that imports pygls and lsprotocol. It never imports torch.
"""

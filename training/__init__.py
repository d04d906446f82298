"""ripple.training: mining git history, datasets, training, evaluation, export.

Never imports ``ripple.server``.
"""

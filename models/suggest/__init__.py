"""ripple.models.suggest: the predictor interface, baselines and the rule-based engine.

A predictor sees the workspace files, their edit history and the cursor, and returns
ranked next-edit suggestions. The replay benchmark and the language server call
predictors through this one interface.
"""

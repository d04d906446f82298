"""ripple.models.edits: what every model sees.

Parsed documents (tree-sitter, incremental), position conversions, tokens, edit
sequences, AST edit scripts and AST paths. Imports neither torch nor pygls.
"""

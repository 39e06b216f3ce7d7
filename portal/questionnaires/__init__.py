"""The question bank: questionnaires as validated data from ``questionnaires/*.toml``."""

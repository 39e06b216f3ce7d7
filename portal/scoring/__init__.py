"""Scoring: rules as data (``questionnaires/rules/``) and a pure function from answers to a
score card. No database, no Flask."""

"""Staff review of a submitted assessment: rule results, manual scores, overrides, comments,
the stored score cards and the outcome (recommended decision, conditions, confirmation)."""

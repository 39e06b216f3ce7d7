"""評価（assessments）: one vendor company's answers to one questionnaire for one engagement."""

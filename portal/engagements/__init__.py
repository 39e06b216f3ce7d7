"""案件 (engagements): what is outsourced or which external service is used, by which department,
with which information — the classification decides the track (9.1 / 9.2 / 9.3)."""

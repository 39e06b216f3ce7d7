"""The audit trail: append-only, hash-chained events (SECURITY.md "Audit trail"; 対策基準 7.1(4)(6))."""

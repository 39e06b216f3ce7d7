"""Authentication as 対策基準 6.4 and 7.2 demand: passwords, lockout, TOTP, sessions, tokens."""

"""Outgoing e-mail: SMTP with STARTTLS when configured, a folder of .eml files otherwise."""

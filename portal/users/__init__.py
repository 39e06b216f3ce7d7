"""User accounts: staff of an organisation or users of a vendor company, with their roles."""

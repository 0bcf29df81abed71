"""Attacks a tenant with an ordinary workspace key could try, kept blocked."""

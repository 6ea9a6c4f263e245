"""Placeholder: the protocol helper writes the client transport here."""

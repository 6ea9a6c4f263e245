"""Placeholder: the protocol helper writes the codec here."""

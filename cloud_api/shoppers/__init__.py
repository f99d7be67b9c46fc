"""Shoppers: consent, devices, loyalty, and their personal data on request."""

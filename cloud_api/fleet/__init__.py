"""Stores, their zones and gateways, and the retained configs and broker users of the gateways."""

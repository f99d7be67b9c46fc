"""E-commerce platforms: carts and orders from their webhooks."""

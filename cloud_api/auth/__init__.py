"""Who is calling: administrator, staff, integrations' API keys, the shopper app's signatures."""

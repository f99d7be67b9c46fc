"""Footfall and engagement statistics: pure functions, and the queries that feed them."""

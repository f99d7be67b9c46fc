"""Stage 3, match: campaigns, and the decision of who gets which offer."""

"""Stage 4, offer: offer codes and their redemption."""

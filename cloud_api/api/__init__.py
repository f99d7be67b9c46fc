"""What every HTTP route shares: request and response bodies, problem documents, pagination."""

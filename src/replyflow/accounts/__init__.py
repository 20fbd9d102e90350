"""Connected Instagram accounts: Pages, tokens (encrypted at rest) and their health."""

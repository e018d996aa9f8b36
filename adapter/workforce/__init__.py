"""The health-workforce directory the API reads: search, one worker in full, masking."""

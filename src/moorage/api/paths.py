"""Where the versioned API is mounted."""

API_PREFIX = "/api/v1"

"""The one boundary: request models validated once, and the operations the UI and API call."""

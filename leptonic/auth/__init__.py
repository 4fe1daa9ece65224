"""Who may call the platform: API tokens (users and roles come later)."""

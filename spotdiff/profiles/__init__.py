"""Model profiles as data: what each profile changes in the settings."""

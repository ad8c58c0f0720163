"""A user's own task, importable by name, for the "register your own task as an id" test."""

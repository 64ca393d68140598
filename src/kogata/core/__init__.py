"""The bottom layer: errors, settings (threads, home), the database and atomic file publishing."""

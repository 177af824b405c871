"""Panels: the parts of pages that each draw one feature (advisor, live view, reviews...)."""

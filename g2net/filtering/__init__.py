"""Matched filtering of 2 s examples: templates, template banks, the baseline every network is held to."""

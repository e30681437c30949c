"""The machine door: the one credential check, use counting, the demo API, leak reports."""

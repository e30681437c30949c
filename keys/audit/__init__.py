"""The ledger: the hash chain, its signatures and checkpoints, its CSV, and its pages."""

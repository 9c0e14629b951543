"""One file per model pair; parity.registry lists them."""

"""absl entry points for f2p experiments."""

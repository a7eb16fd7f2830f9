"""I/O of the core: orbax checkpoints, .npz dataset shards, metric writers."""

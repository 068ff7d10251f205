"""What is written to disk: the crash-safe HDF5 recording, its writer thread, result files, events.jsonl."""

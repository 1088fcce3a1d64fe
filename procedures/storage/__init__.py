"""Run data on disk: run folders (run_data), the tune journal (journal) and the runner that
executes a procedure into its run folder (runner)."""

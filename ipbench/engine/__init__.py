"""Running: requests checked before anything is recorded, the runner of one run, grids and
sweeps, experiment files, the executors (local, Ray), and explicit store migrations."""

"""Models on disk: Hub downloads, the torch-free converter, atomic installs, the disk LRU."""

"""Who plays the master: inline (one process), local (a pool of workers), cluster (a Disco master)."""

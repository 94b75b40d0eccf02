"""discodsl: MapReduce and pipeline jobs for Disco 0.5.4 as decorated Python functions."""

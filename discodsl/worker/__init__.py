"""The worker runtime, run on Disco nodes: imports only the stdlib, cloudpickle and itself."""

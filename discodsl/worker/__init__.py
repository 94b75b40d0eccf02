"""The worker runtime: runs on a Disco node; imports only the standard library, cloudpickle and itself."""

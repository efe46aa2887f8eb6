"""Process management and instance configuration: launcher, run workers, local stack, ops CLIs."""

"""Lightning training stages, callbacks and the machine's precision settings."""

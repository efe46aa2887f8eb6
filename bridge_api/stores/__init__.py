"""The bridge's stores: the state database's prediction store, and the spec catalog."""

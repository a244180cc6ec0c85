"""Live tests: simstack on a real TAP inside throwaway network namespaces."""

"""PostgreSQL itself: local and throwaway server control, and the schema's migrations."""

"""The credential store and the rules it keeps: role requests, cache entries, renewal, bindings'
definitions. Imports no listener, front, API or endpoint."""

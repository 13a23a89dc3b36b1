"""The socket API: its routes under /v1/, the endpoint bindings' included."""

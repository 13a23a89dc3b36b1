"""The container endpoints (ECS-style and IMDSv2-style): bindings served, their tokens, listeners,
apps, guard and lane, and their lasting state."""

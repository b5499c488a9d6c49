"""Schema versions, oldest first by `down_revision`."""

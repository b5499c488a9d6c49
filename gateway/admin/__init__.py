"""The admin API (`/admin/api/...`, admin key only) and the `gateway keys|db` commands."""

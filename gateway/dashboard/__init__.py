"""The admin dashboard: server-rendered pages over the admin JSON API, sessions, assets."""

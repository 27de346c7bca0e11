"""The admin API: `create_app(settings, store)`, auth, the one error shape, thin routes. Must not import SQL."""

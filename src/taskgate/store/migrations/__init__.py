"""The store's schema migrations (Alembic); ``Database.open`` runs them to the head."""

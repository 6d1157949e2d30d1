"""Fakes of outside services that speak their real wire protocols, for tests."""

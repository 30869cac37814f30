"""Stateful entai services: plain classes made into Ray actors in one place each."""

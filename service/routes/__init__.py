"""HTTP routes: thin adapters between FastAPI and :class:`service.engine.Engine`."""

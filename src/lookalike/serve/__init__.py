"""The HTTP service: FastAPI app (``app.create_app``), API keys, routers, the web page."""

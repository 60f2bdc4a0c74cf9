"""The web app: create_app() gives the FastAPI application (JSON API and static page)."""

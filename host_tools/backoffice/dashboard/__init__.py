"""The web dashboard (app.py); templates and static files are package data."""

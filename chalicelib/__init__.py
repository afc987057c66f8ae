"""switchboard: the deployed code of the Chalice WebSocket app (everything besides app.py)."""

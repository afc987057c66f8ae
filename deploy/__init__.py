"""Deployment tooling: IAM policies, the merge template, packaging and the create-table command.

Never deployed (Chalice packages app.py, chalicelib/ and requirements.txt only).
"""

"""Outbound HTTP: the Multitel client and the webhook sender, over one shared layer (``http``).

Nothing here touches the database, so every call can run in a worker thread.
"""

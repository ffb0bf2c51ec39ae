"""The benchmark of issue 5: webchat and python-socketio side by side (``python -m bench``)."""

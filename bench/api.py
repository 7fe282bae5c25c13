"""The Engine API over berthd's UNIX socket, for the bench scripts' Python parts (stdlib only)."""
import http.client
import json
import socket


class Unix(http.client.HTTPConnection):
    """An HTTP connection to a UNIX socket, every call bounded by a 30 s timeout."""

    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(self.socket_path)

    def call(self, method, path, body=None):
        """Sends one request and reads the whole answer (a stream: until berthd ends it)."""
        self.request(method, path, json.dumps(body) if body is not None else None, {"Content-Type": "application/json"})
        r = self.getresponse()
        data = r.read()
        assert r.status < 300, (path, r.status, data)
        return data

"""A mini-faas command function speaking the `http` protocol, standard library only.

The watchdog starts this once per container with PORT set, waits until the port accepts
connections, then sends every invocation as `POST /` with the event as the body. A 2xx reply's
body is the result; any other status is a function error whose message is the body.

Event: {"name": "Ada"} (optional). Result: {"message": "Hello, Ada!", "runtime": "python", ...}.
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREETING = os.environ.get("GREETING", "Hello")


class Handler(BaseHTTPRequestHandler):
    # Keep connections open between calls (the watchdog pools them) and send each reply
    # without waiting for the previous segment's ACK: both matter for warm latency.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            event = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            return self.reply(400, {"error": f"the event is not JSON: {e}"})
        if not isinstance(event, dict):
            return self.reply(400, {"error": "the event must be a JSON object"})
        name = event.get("name", "world")
        if not isinstance(name, str):
            return self.reply(400, {"error": "field `name` must be a string"})
        print(f"greeting {name!r} for {self.headers.get('X-Request-Id', '?')}", flush=True)
        self.reply(200, {
            "message": f"{GREETING}, {name}!",
            "runtime": "python",
            "thread": threading.current_thread().name,
        })

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        # http.server logs every request to stderr; the print in do_POST says enough (the
        # watchdog keeps stdout and stderr lines in the container's log).
        pass


def main():
    port = int(os.environ["PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

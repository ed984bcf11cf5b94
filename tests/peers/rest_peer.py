#!/usr/bin/env python3
"""A token API written from the seed pages alone (shared/seeds/002: the JSON
"authenticate" method; 003: Deki's POST users/authenticate), as an
independent peer for the rest backend's tests. Serves HTTPS on 127.0.0.1
(port 0: printed as "listening on 127.0.0.1:PORT") and answers the one user
alice / "alice pw" in the shape MODE names:

  json            seed 002, Example 2's answer (a token, duration as asked)
  json-comma      seed 002, Example 1's answer as printed (trailing comma)
  json-false      success false, with a session_token anyway
  json-empty      success true, an empty session_token
  deki            seed 003: the token as text, and the authtoken cookie
  redirect        302 to another host
  huge            a 5 MB token

usage: rest_peer.py MODE CERT KEY
"""
import base64, http.server, json, ssl, sys

MODE, CERT, KEY = sys.argv[1:4]
USER, PASSWORD = "alice", "alice pw"


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body, kind="application/json", headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if MODE == "redirect":
            return self.answer(302, "", headers=[("Location", "https://elsewhere.example/authenticate")])
        if MODE == "deki":
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Basic "):
                return self.answer(401, "Login has failed", "text/plain")
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if (user, password) != (USER, PASSWORD):
                return self.answer(401, "Login has failed", "text/plain")
            token = "1_633995282975283345_9370c2b345bdf559ad2e996dca5adf37"
            return self.answer(200, token, "text/plain; charset=utf-8", [
                ("Set-Cookie", 'authtoken="%s"; Expires=Tue, 26-Jan-2010 20:04:57 GMT; Version=1; Path=/' % token)])
        request = json.loads(body)
        credentials = request["credentials"]
        if not request.get("generate_session_token"):
            return self.answer(400, "{}")
        duration = int(request.get("session_token_duration", 10800))
        if (credentials["user"], credentials["password"]) != (USER, PASSWORD):
            return self.answer(200, json.dumps({"success": False, "error": "bad credentials", "error_number": 4}))
        if MODE == "json":
            return self.answer(200, json.dumps({"success": True, "extra_info": {"roles": {"domain": ["example.com"]}, "macsettings": None},
                                                "session_token": "gabbagabba", "session_token_duration": duration, "audit": "flesh36_4f183f46b"}))
        if MODE == "json-comma":
            return self.answer(200, '{\n    "success": true,\n    "session_token": "69da1a00117f157537ce785230414ddd",\n    "session_token_duration": 10800,\n}')
        if MODE == "json-false":
            return self.answer(200, json.dumps({"success": False, "session_token": "gabbagabba", "error": "no", "error_number": 1}))
        if MODE == "json-empty":
            return self.answer(200, json.dumps({"success": True, "session_token": "", "session_token_duration": duration}))
        if MODE == "huge":
            return self.answer(200, json.dumps({"success": True, "session_token": "x" * (5 * 1024 * 1024), "session_token_duration": duration}))
        return self.answer(500, "{}")

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()

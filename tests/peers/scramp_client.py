#!/usr/bin/env python3
"""A SCRAM-SHA-256-PLUS client for the authority's two-step check-in
(docs/PROTOCOL.md), built on scramp, an independent SCRAM implementation:
it binds the login to `tls-server-end-point` of the TLS connection, over
TLS 1.2 or 1.3, and checks the server's signature with scramp.

Usage: scramp_client.py HOST:PORT CA_FILE 1.2|1.3 USER CERT UDID < password

CERT is `-` to bind to the certificate the server presented (what a client
does), or a PEM file whose certificate to bind to instead (what a relay
with that certificate would make the client do). Prints one line:
"token, server signature verified by scramp", or "rejected"; anything else
exits non-zero.
"""

import http.client
import plistlib
import ssl
import sys

from scramp import ScramClient
from scramp.core import CBindData

CONTENT_TYPE = "application/x-apple-aspen-mdm-checkin"
USER_ID = "7A6B1E2C-0D3F-5A4B-8C9D-0E1F2A3B4C5D"


def main():
    addr, ca_file, version, user, cert, udid = sys.argv[1:7]
    password = sys.stdin.read()
    host, port = addr.rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca_file)
    tls = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
    context.minimum_version = tls
    context.maximum_version = tls
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    conn.connect()
    if cert == "-":
        binding = ("tls-server-end-point", conn.sock)
    else:
        with open(cert, "rb") as f:
            der = ssl.PEM_cert_to_DER_cert(f.read().decode("ascii"))
        binding = ("tls-server-end-point", CBindData.from_der(der).data)

    base = {
        "MessageType": "UserAuthenticate",
        "UDID": udid,
        "UserID": USER_ID,
        "UserShortName": user,
        "UserLongName": user,
    }

    def checkin(extra):
        body = plistlib.dumps({**base, **extra})
        conn.request("PUT", "/checkin", body=body, headers={"Content-Type": CONTENT_TYPE})
        answer = conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            sys.exit(f"HTTP {answer.status}")
        return plistlib.loads(data)

    challenge = checkin({})["DigestChallenge"]
    scheme, server_first = challenge.split(" ", 1)
    if scheme != "SCRAM-SHA-256-PLUS":
        sys.exit(f"offered {scheme}, not SCRAM-SHA-256-PLUS")
    client = ScramClient(["SCRAM-SHA-256-PLUS"], user, password, channel_binding=binding)
    # scramp's client-first is `p=tls-server-end-point,,n=USER,r=CNONCE`; the
    # authority's challenge carries its nonce alone, so the SCRAM
    # server-first is r=CNONCE+SNONCE with the challenge's s= and i=.
    client_first = client.get_client_first()
    cnonce = client_first.split(",r=", 1)[1]
    fields = dict(part.split("=", 1) for part in server_first.split(","))
    client.set_server_first(f"r={cnonce}{fields['r']},s={fields['s']},i={fields['i']}")
    client_final = client.get_client_final()
    answer = checkin({"DigestResponse": f"{scheme} {client_first},{client_final}"})
    token = answer.get("AuthToken", "")
    if not token:
        print("rejected")
        return
    client.set_server_final(answer["ServerSignature"])
    print("token, server signature verified by scramp")


if __name__ == "__main__":
    main()

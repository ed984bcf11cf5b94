#!/usr/bin/env python3
"""The SCRAM-SHA-256-PLUS test vectors of docs/PROTOCOL.md, computed with
scramp (an independent SCRAM implementation) from RFC 7677's inputs and the
binding value 0x00..0x1f: one line per GS2 header,

    <gs2 header> <DigestResponse> <ServerSignature>

tls-server-end-point and the `y` flag go through scramp's public client;
scramp does not know the name tls-exporter, so that line swaps in a GS2
header object that gives its name and leaves scramp's arithmetic alone
(RFC 5802: cbind-input = gs2-header || binding data).
tests/channel_binding.rs checks the Rust constants against this output.
"""

from scramp import ScramClient

USER = "user"
PASSWORD = "pencil"
CNONCE = "rOprNGfwEbeRWgbNEkqO"
SNONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SALT = "W22ZaJ0SNY7soEsUEjb6gQ=="
ITERATIONS = 4096
BINDING = bytes(range(32))


class ExporterHeader:
    """`p=tls-exporter,,` as a scramp GS2 header."""

    def __str__(self):
        return "p=tls-exporter,,"

    def make_cbind_input(self, _cb):
        return b"p=tls-exporter,," + BINDING


def vector(mechanism, exporter=False):
    client = ScramClient(
        [mechanism], USER, PASSWORD, channel_binding=("tls-server-end-point", BINDING), c_nonce=CNONCE
    )
    if exporter:
        client.gs2_header = ExporterHeader()
    first = client.get_client_first()
    client.set_server_first(f"r={CNONCE}{SNONCE},s={SALT},i={ITERATIONS}")
    final = client.get_client_final()
    header = first[: first.index("n=")]
    # The authority's challenge says which scheme; a `y` answers a plain one.
    scheme = "SCRAM-SHA-256-PLUS" if header.startswith("p=") else "SCRAM-SHA-256"
    signature = "v=" + __import__("base64").b64encode(client.server_signature).decode()
    return f"{header} {scheme} {first},{final} {signature}"


print(vector("SCRAM-SHA-256-PLUS", exporter=True))
print(vector("SCRAM-SHA-256-PLUS"))
print(vector("SCRAM-SHA-256"))

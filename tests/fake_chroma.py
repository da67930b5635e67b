"""A stand-in Chroma server on 127.0.0.1 for what a real one cannot be made to do in a test:
report another version, demand a token, or speak TLS with a self-signed certificate.

It answers the handful of requests chromadb's HTTP client makes when it connects
(and says every collection is missing), and records the headers it was sent.
"""

from __future__ import annotations

import datetime
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ANSWERS = {
    "/api/v2/auth/identity": {"user_id": "", "tenant": "default_tenant",
                              "databases": ["default_database"]},
    "/api/v2/tenants/default_tenant": {"name": "default_tenant", "resource_name": None},
    "/api/v2/tenants/default_tenant/databases/default_database": {
        "id": "00000000-0000-0000-0000-000000000000", "name": "default_database",
        "tenant": "default_tenant"},
}


class FakeChroma:
    def __init__(self, version: str = "1.0.0", token: str | None = None,
                 tls_dir: Path | None = None, version_status: int = 200) -> None:
        self.version, self.token, self.version_status = version, token, version_status
        self.headers: list[dict[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.ca: Path | None = None
        if tls_dir is not None:
            self.ca, key = _self_signed(tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.ca, key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        scheme = "https" if self.ca else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, object]:
        self.headers.append(headers)
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "AuthError", "message": "Unauthorized"}
        if path == "/api/v2/version":
            return self.version_status, self.version
        if path in ANSWERS:
            return 200, ANSWERS[path]
        name = path.rsplit("/", 1)[-1]
        return 404, {"error": "NotFoundError", "message": f"Collection [{name}] does not exist"}


def _handler(fake: FakeChroma) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = fake.answer(self.path.split("?")[0],
                                       {k.lower(): v for k, v in self.headers.items()})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, its own CA: (certificate file, key file)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "server.pem", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file

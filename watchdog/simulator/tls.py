"""A self-signed certificate for serving the simulator over HTTPS on this machine.

The Terraform CLI speaks only HTTPS to a `cloud` block's hostname, so the simulator needs a
certificate that Terraform (SSL_CERT_FILE) and the watchdog (tfc.ca_bundle) can trust. It is
made with the `openssl` command rather than a Python package, so neither `cryptography` nor
`trustme` becomes a runtime dependency. One certificate is its own CA (CA:TRUE) and names
`localhost` and `127.0.0.1`, so the same PEM file is the trust anchor and the server's
certificate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"


class TlsError(RuntimeError):
    """A certificate could not be made or read; the message is one sentence for the user."""


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def generate(directory: Path, *, days: int = 30) -> CertPair:
    """Write `cert.pem` and `key.pem` (mode 0600) for localhost and 127.0.0.1 into
    `directory` (created if needed), replacing any there."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsError(
            "the `openssl` command is needed to generate a certificate; install it, or give "
            "--cert and --key"
        )
    directory.mkdir(parents=True, exist_ok=True)
    pair = CertPair(directory / CERT_NAME, directory / KEY_NAME)
    command = [
        openssl,
        "req",
        "-x509",
        # P-256 rather than RSA: generated in milliseconds; Go and Python both accept it.
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(pair.key),
        "-out",
        str(pair.cert),
        "-days",
        str(days),
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        # Its own CA, so the one PEM is what clients trust (SSL_CERT_FILE, tfc.ca_bundle).
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,digitalSignature,keyCertSign",
        "-addext",
        "extendedKeyUsage=serverAuth",
    ]
    old_umask = os.umask(0o077)
    try:
        done = subprocess.run(  # noqa: S603 - the openssl found on PATH, fixed arguments
            command, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        os.umask(old_umask)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise TlsError(
            f"openssl could not generate a certificate: {detail[-1] if detail else done.returncode}"
        )
    pair.cert.chmod(0o644)  # public: clients read it as their trust anchor
    return pair


def given(cert: str | None, key: str | None) -> CertPair:
    """A certificate and key the user supplied (both, readable)."""
    if not cert or not key:
        raise TlsError("--cert and --key go together: give both, or neither to generate one")
    pair = CertPair(Path(cert), Path(key))
    for path in (pair.cert, pair.key):
        if not path.is_file():
            raise TlsError(f"{path}: no such file")
    return pair

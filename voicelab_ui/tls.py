"""HTTPS for the studio: the user's own certificate, or a self-signed one made once into the workspace.

Browsers send a LAN login in clear over http and refuse the microphone
(CosyVoice prompt recording) on any http page that is not localhost.
``--https`` makes ``<workspace>/tls/cert.pem`` and ``key.pem`` (key readable
by the owner only) on first use and reuses them; the studio prints the
certificate's SHA-256 fingerprint so a user can check, once, that the
certificate their browser warns about is the studio's own.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from engines.core.errors import VoiceLabError

VALID_DAYS = 825  # what browsers accept for a leaf certificate


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    self_signed: bool


def fingerprint(cert_pem: str | bytes) -> str:
    """SHA-256 of the certificate (DER), as browsers show it: ``AB:CD:...``."""
    text = cert_pem.decode("ascii") if isinstance(cert_pem, bytes) else cert_pem
    der = ssl.PEM_cert_to_DER_cert(text)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def file_fingerprint(cert: Path) -> str:
    return fingerprint(cert.read_text(encoding="ascii"))


def host_names() -> list[str]:
    """Names and addresses a LAN browser may use for this machine (the certificate's alt names)."""
    names = {"localhost", "127.0.0.1", "::1"}
    host = socket.gethostname()
    if host:
        names.add(host)
        try:
            for info in socket.getaddrinfo(host, None):
                names.add(str(info[4][0]))
        except OSError:
            pass
    try:  # the address of the default route's interface, without sending anything
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            names.add(s.getsockname()[0])
    except OSError:
        pass
    return sorted(names)


def _usable(cert: Path, key: Path) -> bool:
    if not (cert.is_file() and key.is_file()):
        return False
    try:
        from cryptography import x509

        c = x509.load_pem_x509_certificate(cert.read_bytes())
        return c.not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    except Exception:  # unreadable: make a new pair
        return False


def make_self_signed(folder: Path, names: list[str]) -> TlsFiles:
    """Write a new key and self-signed certificate for ``names`` into ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "VoiceLab studio"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "VoiceLab (self-signed)")])
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(cert_path, key_path, True)


def tls_files(folder: Path, cert: str = "", key: str = "") -> TlsFiles:
    """The user's certificate and key, or the workspace's self-signed pair (made when missing or expiring)."""
    if cert or key:
        if not (cert and key):
            raise VoiceLabError("--ssl-cert and --ssl-key go together.", "Give both files, or use --https alone.")
        c, k = Path(cert).expanduser(), Path(key).expanduser()
        for p, what in ((c, "certificate"), (k, "key")):
            if not p.is_file():
                raise VoiceLabError(f"The TLS {what} {p} does not exist.", "Check the path.")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(c), str(k))
        except (ssl.SSLError, OSError) as exc:
            raise VoiceLabError(f"The TLS certificate {c} and key {k} cannot be used ({exc}).",
                                "Give a PEM certificate and its unencrypted PEM private key.") from exc
        return TlsFiles(c, k, False)
    if _usable(folder / "cert.pem", folder / "key.pem"):
        return TlsFiles(folder / "cert.pem", folder / "key.pem", True)
    return make_self_signed(folder, host_names())

"""``--https``: a self-signed certificate made once, its fingerprint printed; or the user's own pair."""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import stat

import httpx
import pytest

from engines.core.errors import VoiceLabError
from voicelab_ui.tls import file_fingerprint, fingerprint, make_self_signed, tls_files


def test_self_signed_pair_is_made_once_and_kept_private(tmp_path):
    first = tls_files(tmp_path / "tls")
    assert first.self_signed and first.cert.is_file()
    assert stat.S_IMODE(os.stat(first.key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(first.cert.parent).st_mode) == 0o700
    again = tls_files(tmp_path / "tls")
    assert file_fingerprint(again.cert) == file_fingerprint(first.cert)  # reused, not remade
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(first.cert), str(first.key))


def test_own_certificate_is_checked(tmp_path):
    own = make_self_signed(tmp_path / "own", ["studio.lan"])
    other = make_self_signed(tmp_path / "other", ["x"])
    assert tls_files(tmp_path / "unused", str(own.cert), str(own.key)).self_signed is False
    with pytest.raises(VoiceLabError, match="go together"):
        tls_files(tmp_path / "unused", str(own.cert), "")
    with pytest.raises(VoiceLabError, match="does not exist"):
        tls_files(tmp_path / "unused", str(tmp_path / "nope.pem"), str(own.key))
    with pytest.raises(VoiceLabError, match="cannot be used"):
        tls_files(tmp_path / "unused", str(own.cert), str(other.key))  # a key that is not the certificate's


@pytest.mark.slow
def test_studio_over_https_with_the_printed_fingerprint_and_a_login(tmp_path):
    from browser import studio

    ws = tmp_path / "ws"
    with studio(ws, "--https", "--lan", "--auth", "bob:tls-secret", timeout=180) as (url, _):
        assert url.startswith("https://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1].strip("/"))
        log = (tmp_path / f"studio-{port}.log").read_text()
        printed = re.search(r"SHA-256 fingerprint: ([0-9A-F]{2}(?::[0-9A-F]{2}){31})", log).group(1)
        assert f"VoiceLab studio: https://127.0.0.1:{port}" in log
        # the certificate the server presents is the one whose fingerprint it printed (a pinned check)
        served = ssl.get_server_certificate(("127.0.0.1", port))
        assert fingerprint(served) == printed
        assert printed == ":".join(f"{b:02X}" for b in hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).digest())
        assert file_fingerprint(ws / "tls" / "cert.pem") == printed
        with httpx.Client(verify=False, timeout=30) as c:
            page = c.get(url)
            assert page.status_code == 200 and '"auth_required":true' in page.text
            assert c.get(url + "config").status_code == 401
            assert c.post(url + "login", data={"username": "bob", "password": "tls-secret"}).status_code == 200
            config = c.get(url + "config")
            assert config.status_code == 200 and config.json()["components"]
        with pytest.raises(httpx.HTTPError):  # plain http on the TLS port gets nowhere
            httpx.get(url.replace("https://", "http://"), timeout=10).raise_for_status()

"""A raw HTTP client of a running studio: log in, upload, call any endpoint with any data, fetch files.

gradio_client would upload local files and validate types on the way; a hostile client does
neither, so these tests post a JSON ``data`` list to ``/gradio_api/run/<name>``, which runs the
same (guarded) handler as the page's queue, in one round trip.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


@dataclass
class Answer:
    ok: bool
    value: Any  # the outputs (ok) or the error message

    @property
    def text(self) -> str:
        return self.value if isinstance(self.value, str) else json.dumps(self.value, default=str)


class StudioHTTP:
    def __init__(self, url: str, auth: tuple[str, str] | None = None, timeout: float = 120) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(verify=False, timeout=timeout, follow_redirects=False)
        if auth:
            r = self.http.post(f"{self.url}/login", data={"username": auth[0], "password": auth[1]})
            r.raise_for_status()
        self._info: dict | None = None

    def close(self) -> None:
        self.http.close()

    # -- endpoints ---------------------------------------------------------------------------
    def info(self) -> dict:
        if self._info is None:
            r = self.http.get(f"{self.url}/gradio_api/info")
            r.raise_for_status()
            self._info = r.json()
        return self._info

    def endpoints(self) -> dict[str, list[dict]]:
        """``{"/name": [parameter, ...]}`` exactly as ``view_api()`` lists them."""
        return {name: ep["parameters"] for name, ep in self.info()["named_endpoints"].items()}

    def defaults(self, name: str) -> list[Any]:
        """A value for every parameter of ``name``: its default, else an empty value of its kind."""
        out = []
        for p in self.endpoints()[name]:
            if p.get("parameter_has_default"):
                out.append(p.get("parameter_default"))
            elif p.get("component") in ("Checkbox",):
                out.append(False)
            elif p.get("component") in ("Slider", "Number"):
                out.append(0)
            else:
                out.append(None)
        return out

    def call(self, name: str, *data: Any, **by_name: Any) -> Answer:
        """Call ``/name``; positional ``data`` first, then the rest by parameter name (defaults elsewhere)."""
        values = self.defaults(name)
        for i, v in enumerate(data):
            values[i] = v
        names = [p["parameter_name"] for p in self.endpoints()[name]]
        for k, v in by_name.items():
            values[names.index(k)] = v
        return self.call_raw(name, values)

    def call_raw(self, name: str, values: list[Any]) -> Answer:
        """One request to ``/gradio_api/run/<name>`` (the same handler the page's queue calls)."""
        r = self.http.post(f"{self.url}/gradio_api/run{name}", json={"data": values})
        try:
            body = r.json()
        except ValueError:
            return Answer(False, f"HTTP {r.status_code}: {r.text[:500]}")
        if r.status_code == 200 and isinstance(body, dict) and "data" in body:
            return Answer(True, body["data"])
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return Answer(False, body["error"])
        return Answer(False, f"HTTP {r.status_code}: {json.dumps(body)[:500]}")

    # -- files and jobs ----------------------------------------------------------------------
    def upload(self, path: Path) -> str:
        """Upload ``path``; returns the server path Gradio gave it."""
        with open(path, "rb") as fh:
            r = self.http.post(f"{self.url}/gradio_api/upload", files={"files": (path.name, fh)})
        r.raise_for_status()
        return r.json()[0]

    @staticmethod
    def file_data(server_path: str) -> dict:
        return {"path": server_path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(server_path).name}

    def get_file(self, server_path: str) -> httpx.Response:
        return self.http.get(f"{self.url}/gradio_api/file={server_path}")

    def wait_job(self, job_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            ans = self.call("/job_status", job_id)
            assert ans.ok, ans.value
            rec = ans.value[0] if isinstance(ans.value, list) else ans.value
            if rec["state"] in ("done", "failed", "cancelled", "interrupted"):
                return rec
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {rec['state']}")
            time.sleep(0.3)

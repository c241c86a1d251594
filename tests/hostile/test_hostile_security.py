"""The security items of issue 13, as tests against a LAN studio with a login.

- an anonymous client gets the login page and nothing else (no endpoint, no path);
- files are served by allow-list (the jobs database's -wal/-shm files are 403; another session's upload too);
- every parameter of every endpoint, enumerated from ``view_api()`` so a new endpoint cannot escape,
  refuses /etc and a forbidden folder: an audit hook in the studio sees no access there, no answer
  leaks a listing, no yaml runs;
- every endpoint answers None / lists / dicts / huge numbers with a clear error, never a traceback;
- failed logins back off per client;
- five concurrent first conversions on a fresh studio all succeed.
"""

from __future__ import annotations

import concurrent.futures
import re
import time
import urllib.error
import urllib.request

import httpx
import pytest
from harness import LOGIN
from studio_http import Answer, StudioHTTP

pytestmark = pytest.mark.slow

JOB_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
# Names inside the forbidden folders that only a listing or a read could put into an answer.
LEAK_WORDS = ("root:x:", "hostname", "fstab", "nsswitch", "added_IVF1_Flat_nprobe_1_canary", "canary-shards",
              "model.pth", "!apply:os.system")


def test_anonymous_clients_get_the_login_page_and_nothing_else(hostile):
    body = urllib.request.urlopen(hostile.url, timeout=10).read().decode()
    assert "gradio_api_info = null" in body and '"auth_required":true' in body
    for leak in ("named_endpoints", "/dataset_import", "api_name", "voicelab_job_id", str(hostile.ws), "tiny.pth"):
        assert leak not in body, leak
    for method, path in (("GET", "/gradio_api/info"), ("GET", "/config"), ("GET", "/gradio_api/openapi.json"),
                         ("GET", f"/gradio_api/file={hostile.ws}/outputs/x.wav"), ("POST", "/gradio_api/upload"),
                         ("POST", "/gradio_api/queue/join"), ("POST", "/gradio_api/call/job_status"),
                         ("GET", "/monitoring"), ("GET", "/gradio_api/runs")):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(hostile.url.rstrip("/") + path, method=method,
                                                          data=b"{}" if method == "POST" else None), timeout=10)
        assert err.value.code == 401, (path, err.value.code)


@pytest.mark.browser
def test_the_login_page_still_logs_in_in_a_browser(hostile):
    from browser import browser_page

    with browser_page() as page:
        page.goto(hostile.url)
        page.locator("input[type=password]").wait_for()
        page.locator("input[type=text]").first.fill(LOGIN[0])
        page.locator("input[type=password]").fill(LOGIN[1])
        page.get_by_role("button", name="Login").click()
        page.get_by_role("tab", name="Dataset").wait_for(timeout=60000)


def test_files_are_served_by_allow_list_only(hostile):
    http, ws = hostile.http, hostile.ws
    served = [ws / "outputs" / "a.wav", ws / "datasets" / "d" / "clips" / "000001.wav", ws / "ab" / "cache" / "r.wav"]
    refused = [ws / "jobs.sqlite", ws / "jobs.sqlite-wal", ws / "jobs.sqlite-shm", ws / "settings.toml",
               ws / "ab" / "sessions" / "s.json", ws / "experiments" / "e" / "G_1.pth", ws / "weights" / "tiny.pth",
               ws / "tls" / "key.pem", ws / "jobs" / "x.log"]
    for p in served + refused:
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.write_bytes(b"RIFF")
    for p in served:
        assert http.get_file(str(p)).status_code == 200, p
    for p in refused + [hostile.outside / "canary.wav"]:
        assert http.get_file(str(p)).status_code == 403, p
    assert http.get_file(f"{ws}/outputs/../jobs.sqlite-wal").status_code == 403
    # an upload is served to the session that made it, not to another login
    mine = http.upload(hostile.good_wav)
    other = StudioHTTP(hostile.url, LOGIN)
    try:
        assert http.get_file(mine).status_code == 200
        assert other.get_file(mine).status_code == 403
    finally:
        other.close()


def _probe_values(hostile) -> list[str]:
    """Second probes (every parameter also gets /etc): the forbidden model dir, its yaml, traversal, /root."""
    return [str(hostile.outside), str(hostile.outside / "cosyvoice2.yaml"), "../../../../etc", "/root"]


PATHISH = ("dir", "folder", "path", "file", "wav", "model", "index", "data", "checkpoint", "ckpt", "source", "src",
           "upload", "audio", "list", "embedding", "llm", "flow", "hubert", "rmvpe", "pretrained", "out", "dest")


def _is_text_param(p: dict) -> bool:
    t = str(p.get("python_type", {}).get("type", ""))
    return p.get("component") in ("Textbox", "Dropdown", "Api", "Browserstate", "Radio", "Checkboxgroup") or "str" in t


def _is_file_param(p: dict) -> bool:
    return p.get("component") in ("File", "Audio", "Image", "Video") or "filepath" in str(p.get("python_type"))


def _path_fields() -> dict[str, dict[str, str]]:
    """``{operation: {field: kind}}``: the fields each operation declares as server paths."""
    from engines.core.ops import load_operations
    from engines.core.paths import path_fields

    return {name: path_fields(op.params) for name, op in load_operations().items()}


def test_every_path_field_of_every_endpoint_refuses_outside_paths(hostile):
    from test_hostile_corpus import label_key

    http = hostile.http
    endpoints = http.endpoints()  # view_api(): a new endpoint is probed without anyone listing it
    assert len(endpoints) > 100
    declared = _path_fields()
    start = len(hostile.audit_lines())
    second = _probe_values(hostile)
    calls: list[tuple[str, str, int, object]] = []
    for name, params in endpoints.items():
        for i, p in enumerate(params):
            field = label_key(p).rpartition(".")[2]
            is_list = "list" in str(p.get("python_type", {}).get("type", ""))
            if _is_file_param(p):
                values: list = [http.file_data("/etc/passwd"), http.file_data(str(hostile.outside / "canary.wav"))]
            elif _is_text_param(p):
                pathish = any(w in f"{field} {p['parameter_name']}".lower() for w in PATHISH)
                values = ["/etc"] + ([second[len(calls) % len(second)]] if pathish else [])
            else:
                continue
            calls += [(name, field, i, [v] if is_list and not isinstance(v, dict) else v) for v in values]

    def probe(call: tuple) -> tuple[tuple, object]:
        name, field, i, value = call
        data = http.defaults(name)
        data[i] = value
        return call, http.call_raw(name, data)

    jobs: set[str] = set()
    refused: set[str] = set()
    leaks = []
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        for (name, field, _, value), ans in pool.map(probe, calls):
            if any(w in ans.text for w in LEAK_WORDS):
                leaks.append((name, field, value, ans.text[:300]))
            jobs.update(v for v in (ans.value if ans.ok and isinstance(ans.value, list) else [])
                        if isinstance(v, str) and JOB_ID.match(v))
            if "outside the folders the studio may use" in ans.text:
                refused.add(f"{name}:{field}")
    assert not leaks, leaks
    probes = ["/etc", "/root", str(hostile.outside), "canary.wav"]
    for job_id in jobs:
        rec = http.wait_job(job_id, timeout=600)
        # a job may carry a probe in a name or a text, but never in a field its operation reads as a path
        for fname, kind in declared.get(rec["op"], {}).items():
            value = rec["params"].get(fname)
            values = value if isinstance(value, list) else [value]
            assert not any(isinstance(v, str) and any(v.startswith(pr) or pr in v for pr in probes) for v in values), \
                (rec["op"], fname, kind, value)
    time.sleep(1.0)
    touched = hostile.audit_lines()[start:]
    assert not touched, "the studio touched forbidden paths:\n" + "\n".join(touched[:40])
    assert not (hostile.root / "PWNED-outside").exists()
    assert len(calls) > 250, len(calls)
    assert len(refused) >= 15, sorted(refused)


@pytest.mark.parametrize("value", [None, [1, {"a": 2}], {"path": "/etc/passwd"}, 1e308, "\0" * 3],
                         ids=["none", "list", "dict", "huge", "nul"])
def test_every_endpoint_answers_bad_arguments_clearly(hostile, value):
    http = hostile.http
    unclear = []
    for name, params in http.endpoints().items():
        ans = http.call_raw(name, [value] * len(params))
        if not ans.ok and ("cannot use these arguments" in ans.text or "Traceback" in ans.text
                           or ans.text.startswith("HTTP 5")):
            unclear.append(f"{name}: {ans.text[:200]}")
    assert not unclear, "\n".join(unclear)
    assert http.call("/job_status", "20990101-000000-abcdef").text.startswith("No job")


def test_failed_logins_back_off_per_client(hostile):
    url = hostile.url.rstrip("/")
    with httpx.Client(timeout=30) as c:
        def login(password: str) -> httpx.Response:
            return c.post(f"{url}/login", data={"username": LOGIN[0], "password": password})

        codes = [login("wrong").status_code for _ in range(5)]
        assert codes == [400] * 5
        locked = login("wrong")
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
        assert "try again in" in locked.json()["detail"]
        assert login(LOGIN[1]).status_code == 429  # the right password waits too
        time.sleep(float(locked.headers["retry-after"]) + 0.2)
        assert login("wrong").status_code == 400
        second = login("wrong")
        assert second.status_code == 429 and int(second.headers["retry-after"]) >= 2  # the wait doubles
        time.sleep(float(second.headers["retry-after"]) + 0.2)
        assert login(LOGIN[1]).status_code == 200  # and a good login clears the slate
        assert login("wrong").status_code == 400


def test_five_concurrent_first_conversions_all_succeed(tmp_path, tiny_models):
    import shutil

    import soundfile as sf
    from browser import studio
    from corpus import tone

    ws = tmp_path / "ws"
    (ws / "weights").mkdir(parents=True)
    shutil.copy(tiny_models[0], ws / "weights" / "tiny.pth")
    src = tmp_path / "in.wav"
    sf.write(src, tone(1.0), 16000)
    with studio(ws, env={"VOICELAB_HUBERT": str(tiny_models[1])}, timeout=180) as (url, _):
        def convert(seed: int) -> Answer:
            http = StudioHTTP(url, timeout=600)
            try:
                return http.call("/convert", http.file_data(http.upload(src)), "tiny", "", f0_method="pm", seed=seed)
            finally:
                http.close()

        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(convert, range(5)))
    assert all(a.ok for a in answers), [a.text[:300] for a in answers if not a.ok]

"""Test-only audit hook (on PYTHONPATH of a studio under test): log every file access under watched roots.

``VOICELAB_AUDIT_LOG`` names the log; ``VOICELAB_AUDIT_ROOTS`` (os.pathsep-separated) the folders
that must never be touched. Each hit is one line: ``<pid> <event> <path>``. Opens, directory
listings, copies, renames, removals and started programs are audited (Python's audit events), so
a read through any code path of the studio, or of a Python process it starts, is seen.
"""

import os
import sys

_LOG = os.environ.get("VOICELAB_AUDIT_LOG")
if _LOG:
    _ROOTS = tuple(os.path.normpath(r) for r in os.environ.get("VOICELAB_AUDIT_ROOTS", "").split(os.pathsep) if r)
    _FD = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _PATH_EVENTS = {"open": 1, "os.listdir": 1, "os.scandir": 1, "shutil.copyfile": 2, "shutil.copytree": 2,
                    "os.rename": 2, "os.remove": 1, "os.rmdir": 1, "os.symlink": 2, "os.link": 2, "os.chdir": 1}
    _PROGRAM_EVENTS = ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn")

    def _watched(value):
        if isinstance(value, int) or value is None:
            return None
        try:
            text = os.fsdecode(value)
        except Exception:
            return None
        full = os.path.normpath(os.path.join(os.getcwd(), text)) if not text.startswith("/") else os.path.normpath(text)
        for root in _ROOTS:
            if full == root or full.startswith(root + "/"):
                return full
        return None

    def _hook(event, args):
        hits = []
        if event in _PATH_EVENTS:
            hits = [h for h in map(_watched, args[: _PATH_EVENTS[event]]) if h]
        elif event in _PROGRAM_EVENTS:
            words = [a for a in args if isinstance(a, (str, bytes))]
            for a in args:
                if isinstance(a, (list, tuple)):
                    words += [w for w in a if isinstance(w, (str, bytes))]
            if any(any(r in os.fsdecode(w) for r in _ROOTS) for w in words):
                hits = [" ".join(os.fsdecode(w) for w in words)[:2000]]
        if hits:  # where in the studio's code it happened (the innermost frames of our packages)
            frame, where = sys._getframe(1), []
            while frame is not None and len(where) < 4:
                name = frame.f_code.co_filename
                if "/engines/" in name or "/voicelab_ui/" in name:
                    where.append(f"{name.rsplit('/', 2)[-2]}/{os.path.basename(name)}:{frame.f_lineno}")
                frame = frame.f_back
        for h in hits:
            os.write(_FD, f"{os.getpid()} {event} {h} (at {' <- '.join(where) or '?'})\n".encode("utf-8", "replace"))

    sys.addaudithook(_hook)

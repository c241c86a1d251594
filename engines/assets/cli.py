"""`voicelab assets check|list|import|download`."""

from __future__ import annotations

import argparse
import json
import sys

from engines.core.settings import Workspace


def _hooks(quiet: bool = False):
    from engines.cli import terminal_hooks

    return terminal_hooks(quiet)


def cmd_check(args: argparse.Namespace, ws: Workspace) -> int:
    from engines.assets.check import check_assets, feature_readiness, format_table

    statuses = check_assets(ws.settings, names=args.names or None, verify=args.verify,
                            hooks=_hooks(quiet=args.json))
    ready = feature_readiness(statuses)
    if args.json:
        print(json.dumps({"assets": [s.to_dict() for s in statuses],
                          "features": {k: {"ready": r, "missing": m} for k, (r, m) in ready.items()}},
                         indent=2, ensure_ascii=False))
    else:
        print(format_table(statuses))
        if ready:
            print("\nFEATURE                READY  NEEDS")
            for name, (ok, missing) in ready.items():
                print(f"{name:<22} {'yes' if ok else 'no':<6} {', '.join(missing)}")
        fixes = [s for s in statuses if not s.ok and s.command]
        if fixes:
            print("\nTo fix: voicelab assets download NAME...  |  voicelab assets import --from DIR")
    bad = [s for s in statuses if s.status in ("wrong-size", "wrong-hash")]
    return 1 if bad else 0


def cmd_list(args: argparse.Namespace, ws: Workspace) -> int:
    from engines.assets.manifest import asset_path, load_manifest

    manifest = load_manifest()
    rows = []
    for spec in manifest.assets.values():
        rows.append({"name": spec.name, "kind": spec.kind, "path": str(asset_path(ws.settings, spec.name, manifest)),
                     "size": spec.size, "sha256": spec.sha256, "features": manifest.features_of(spec.name),
                     "sources": spec.sources(), "license": spec.license, "title": spec.title})
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for r in rows:
        size = f"{r['size']:,} B" if r["size"] else "size ?"
        print(f"{r['name']:<32} {r['kind']:<7} {size:>16}  {r['title']}")
        print(f"{'':<32} -> {r['path']}   [{', '.join(r['features']) or '-'}]")
        if r["sources"]:
            print(f"{'':<32}    from {'; '.join(r['sources'])}")
    return 0


def cmd_import(args: argparse.Namespace, ws: Workspace) -> int:
    from engines.assets.importer import CONFLICT, NOT_FOUND, import_assets

    report = import_assets(ws.settings, args.source_dir, copy=args.copy, names=args.names or None,
                           hooks=_hooks(quiet=args.json))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for item in report.items:
            if item.action == NOT_FOUND:
                continue
            print(f"{item.action:<9} {item.name:<32} {item.source}" + (f"\n{'':<42}{item.detail}" if item.detail else ""))
        print(report.summary())
    return 1 if report.by_action(CONFLICT) else 0


def cmd_download(args: argparse.Namespace, ws: Workspace) -> int:
    from engines.assets.download import download_assets

    results = download_assets(ws.settings, args.names, all_assets=args.all, source=args.source,
                              force=args.force, hooks=_hooks(quiet=args.json))
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2, ensure_ascii=False))
    else:
        for r in results:
            print(f"{r.action:<10} {r.name:<32} {r.path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    assets = sub.add_parser("assets", help="Model files: check, import from another install, download")
    asub = assets.add_subparsers(dest="assets_cmd", required=True)

    check = asub.add_parser("check", help="Which model files are present, intact, and which features can run")
    check.add_argument("names", nargs="*", help="Only these assets (default: all)")
    check.add_argument("--json", action="store_true", help="Machine-readable output")
    check.add_argument("--verify", action="store_true", help="Re-hash every file (ignore the hash cache)")
    check.set_defaults(func=cmd_check)

    ls = asub.add_parser("list", help="Every asset the studio knows: where it goes and where it comes from")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    imp = asub.add_parser("import", help="Link (or copy) model files from an RVC WebUI / Applio / CosyVoice folder")
    imp.add_argument("--from", dest="source_dir", required=True, help="The other install's folder")
    imp.add_argument("--copy", action="store_true", help="Copy instead of symlinking")
    imp.add_argument("names", nargs="*", help="Only these assets (default: all found)")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(func=cmd_import)

    dl = asub.add_parser("download", help="Download model files (Hugging Face, HF_ENDPOINT mirror, or ModelScope)")
    dl.add_argument("names", nargs="*", help="Asset names (see `voicelab assets list`)")
    dl.add_argument("--all", action="store_true", help="Every downloadable asset")
    dl.add_argument("--source", choices=("hf", "modelscope"), default="hf")
    dl.add_argument("--force", action="store_true", help="Download again even when present and intact")
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=cmd_download)


if __name__ == "__main__":  # pragma: no cover
    from engines.cli import main

    sys.exit(main(["assets", *sys.argv[1:]]))

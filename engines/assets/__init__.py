"""Model assets: the manifest of weight files, checks, import from other installs, downloads.

Other engines call ``require_asset(settings, name, why)`` to get a weight
file's path or a MissingAssetError that names the file, where it goes and
the command that fetches it. Importing this package is cheap (no torch, no
huggingface_hub).
"""

from engines.assets.check import AssetStatus, check_assets, feature_readiness
from engines.assets.manifest import (
    AssetSpec,
    Manifest,
    asset_path,
    load_manifest,
    require_asset,
)

__all__ = [
    "AssetSpec",
    "AssetStatus",
    "Manifest",
    "asset_path",
    "check_assets",
    "feature_readiness",
    "load_manifest",
    "require_asset",
]

"""Imports the plugin zip (``livefill install-plugin krita --zip``) with Krita's own importer.

Why this exists: "Tools > Scripts > Import Python Plugin from File..." only accepts a zip laid
out the way Krita's ``plugin_importer`` expects; running that very importer (shipped with Krita)
inside kritarunner proves the zip works. Env: LIVEFILL_ZIP, LIVEFILL_ZIP_DEST, LIVEFILL_TEST_RESULTS.
"""

import json
import os
import sys
import traceback


def main(*_args):
    out = {"checks": [], "done": False}

    def check(name, ok, detail=""):
        out["checks"].append({"name": name, "ok": bool(ok), "detail": str(detail)})

    try:
        from krita import Krita

        plugins_root = "/usr/share/krita/pykrita"
        for path in [p for p in sys.path if p.endswith("pykrita")] + [plugins_root]:
            if os.path.isdir(os.path.join(path, "plugin_importer")) and path not in sys.path:
                sys.path.append(path)
        from plugin_importer.plugin_importer import PluginImporter

        dest = os.environ["LIVEFILL_ZIP_DEST"]
        importer = PluginImporter(os.environ["LIVEFILL_ZIP"], dest, lambda plugin: True)
        imported = importer.import_all()
        check("zip: Krita's importer finds the plugin", [p["name"] for p in imported] == ["livefill_krita"],
              imported)
        pkg = os.path.join(dest, "pykrita", "livefill_krita")
        shared = ("livefill_protocol.py", "livefill_client.py", "livefill_plugin_core.py")
        for name in ("__init__.py", "controller.py") + shared:
            check("zip: installs %s" % name, os.path.isfile(os.path.join(pkg, name)))
        check("zip: installs the desktop file", os.path.isfile(os.path.join(dest, "pykrita", "livefill_krita.desktop")))
        sys.path.insert(0, os.path.join(dest, "pykrita"))
        for mod in [m for m in sys.modules if m.startswith("livefill_krita")]:
            del sys.modules[mod]
        import livefill_krita.controller  # noqa: F401

        check("zip: imported package loads in Krita", livefill_krita.controller.__file__.startswith(pkg),
              livefill_krita.controller.__file__)
        check("zip: Krita version", bool(Krita.instance().version()), Krita.instance().version())
    except Exception:
        check("zip: no exception", False, traceback.format_exc())
    out["done"] = True
    with open(os.environ["LIVEFILL_TEST_RESULTS"], "w") as f:
        json.dump(out, f, indent=1, default=str)
